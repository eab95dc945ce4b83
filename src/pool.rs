//! Per-thread free lists for the buffers a request's replay copy is made in.
//!
//! This is the crate's only thread-local state, and nothing depends on what it holds: it
//! is an allocation cache. Copying a request's head and small body into a reused buffer
//! costs no allocation and touches no reference count, where cloning the parts would
//! allocate the shared form of each runtime-built `Bytes`. A list that is missing
//! (thread teardown) or busy just means a fresh buffer is made, or a spare is dropped.

use std::{cell::RefCell, thread::LocalKey};

/// A free list: declare one per buffer type with `thread_local!`.
pub(crate) type FreeList<T> = RefCell<Vec<T>>;

/// Spares kept per list; more given back at once are dropped.
const SPARE_COUNT: usize = 256;

/// Takes a spare from this thread's list, if it has one.
#[inline]
pub(crate) fn take<T>(list: &'static LocalKey<FreeList<T>>) -> Option<T> {
    list.try_with(|spare| spare.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
}

/// Gives a spare back to this thread's list, unless the list is full (or gone: during
/// thread teardown the spare is simply dropped).
#[inline]
pub(crate) fn give<T>(list: &'static LocalKey<FreeList<T>>, spare: T) {
    let _ = list.try_with(|list| {
        if let Ok(mut list) = list.try_borrow_mut() {
            if list.len() < SPARE_COUNT {
                list.push(spare);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static LIST: FreeList<u32> = const { RefCell::new(Vec::new()) };
    }

    #[test]
    fn a_thread_keeps_at_most_spare_count_spares_and_gives_them_back_last_in_first_out() {
        std::thread::spawn(|| {
            assert_eq!(take(&LIST), None);
            for i in 0..=SPARE_COUNT as u32 {
                give(&LIST, i);
            }
            assert_eq!(LIST.with_borrow(Vec::len), SPARE_COUNT);
            assert_eq!(take(&LIST), Some(SPARE_COUNT as u32 - 1));
        })
        .join()
        .unwrap();
    }
}
