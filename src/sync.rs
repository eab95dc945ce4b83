//! The one lock helper.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning: every critical section in this crate leaves its data
/// consistent even if it panics (a fetcher's panic is caught before it reaches one).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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
