//! Per-thread free lists for the buffers a request's replay copy is made in.
//!
//! This is the crate's only thread-local state, and nothing depends on what it holds: it
//! is an allocation cache. Copying a request's head and small body into a reused buffer
//! costs no allocation and touches no reference count, where cloning the parts would
//! allocate the shared form of each runtime-built `Bytes`. A list that is missing
//! (thread teardown) or busy just means a fresh buffer is made, or a spare is dropped.

use std::{
    cell::{Cell, RefCell},
    thread::LocalKey,
};

/// A free list: declare one per buffer type with `thread_local!`, as
/// `const { FreeList::new() }`.
///
/// The last spare given back is kept apart, in a `Cell`: a thread that has one request in
/// flight at a time takes and gives back that one without touching the list.
pub(crate) struct FreeList<T> {
    last: Cell<Option<T>>,
    more: RefCell<Vec<T>>,
}

impl<T> FreeList<T> {
    pub(crate) const fn new() -> Self {
        Self {
            last: Cell::new(None),
            more: RefCell::new(Vec::new()),
        }
    }

    /// How many spares it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let last = self.last.take();
        let len = usize::from(last.is_some()) + self.more.borrow().len();
        self.last.set(last);
        len
    }
}

/// Spares kept per list (beyond the last one); more given back at once are dropped.
const SPARE_COUNT: usize = 256;

/// Takes a spare from this thread's list, if it has one.
#[inline]
pub(crate) fn take<T>(list: &'static LocalKey<FreeList<T>>) -> Option<T> {
    list.try_with(|list| {
        list.last
            .take()
            .or_else(|| list.more.try_borrow_mut().ok()?.pop())
    })
    .ok()
    .flatten()
}

/// Gives a spare back to this thread's list, unless the list is full (or gone: during
/// thread teardown the spare is simply dropped).
#[inline]
pub(crate) fn give<T>(list: &'static LocalKey<FreeList<T>>, spare: T) {
    let _ = list.try_with(|list| {
        if let Some(older) = list.last.replace(Some(spare)) {
            if let Ok(mut more) = list.more.try_borrow_mut() {
                if more.len() < SPARE_COUNT {
                    more.push(older);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static LIST: FreeList<u32> = const { FreeList::new() };
    }

    #[test]
    fn a_thread_keeps_at_most_spare_count_and_one_spares_and_gives_them_back_last_in_first_out() {
        std::thread::spawn(|| {
            assert_eq!(take(&LIST), None);
            for i in 0..=SPARE_COUNT as u32 + 1 {
                give(&LIST, i);
            }
            assert_eq!(LIST.with(FreeList::len), SPARE_COUNT + 1);
            assert_eq!(
                take(&LIST),
                Some(SPARE_COUNT as u32 + 1),
                "the last one given"
            );
            assert_eq!(
                take(&LIST),
                Some(SPARE_COUNT as u32 - 1),
                "then the list's top"
            );
            give(&LIST, 7);
            assert_eq!(take(&LIST), Some(7));
        })
        .join()
        .unwrap();
    }
}
