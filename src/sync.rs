//! The crate's one lock helper.
//!
//! A mutex is poisoned when a thread panicked while holding it. Every critical section
//! in this crate writes whole values, so what a poisoned mutex guards is still
//! consistent; refusing it would turn one panic into a layer that never works again.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, using its value as it stands if a panic poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_locks_with_its_value() {
        let m = Mutex::new(1);
        let _ = std::panic::catch_unwind(|| {
            let mut guard = m.lock().unwrap();
            *guard = 2;
            panic!("poison it");
        });
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 2);
    }
}
