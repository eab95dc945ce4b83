//! The one lock helper.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning: every critical section in this crate leaves its data
/// consistent even if it panics (a fetcher's panic is caught before it reaches one).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
