//! Which OS thread an event comes from.
//!
//! CPython's thread ident (`pthread_self`) is reused as soon as a thread
//! ends: a program starting threads one after another would have them all
//! recorded as one thread. A key drawn from a counter into a thread-local on
//! the thread's first event is never reused. When a thread the recording
//! knows ends, its key is queued (by the thread-local's destructor) so that
//! the recording can forget its state: memory follows the live threads, not
//! every thread the run ever started.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
static ENDED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static ANY_ENDED: AtomicBool = AtomicBool::new(false);

struct Key {
    key: u64,
    /// A recording keeps state for this thread: say so when it ends.
    known: Cell<bool>,
}

impl Drop for Key {
    fn drop(&mut self) {
        if self.known.get()
            && let Ok(mut ended) = ENDED.lock()
        {
            ended.push(self.key);
            ANY_ENDED.store(true, Ordering::Release);
        }
    }
}

thread_local! {
    static KEY: Key = Key {
        key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
        known: Cell::new(false),
    };
}

/// The calling thread's key; 0 while the thread is being torn down.
pub(crate) fn current() -> u64 {
    KEY.try_with(|k| k.key).unwrap_or(0)
}

/// Notes that a recording keeps state for the calling thread.
pub(crate) fn mark_known() {
    let _ = KEY.try_with(|k| k.known.set(true));
}

/// The keys of known threads that ended since the last call.
pub(crate) fn take_ended() -> Vec<u64> {
    if !ANY_ENDED.swap(false, Ordering::Acquire) {
        return Vec::new();
    }
    ENDED
        .lock()
        .map(|mut ended| std::mem::take(&mut *ended))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_that_follow_one_another_get_distinct_keys_and_are_reported_ended() {
        let here = current();
        let keys: Vec<u64> = (0..4)
            .filter_map(|_| {
                std::thread::spawn(|| {
                    mark_known();
                    current()
                })
                .join()
                .ok()
            })
            .collect();
        assert_eq!(keys.len(), 4);
        let mut distinct = keys.clone();
        distinct.push(here);
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5);
        let ended = take_ended();
        assert!(keys.iter().all(|k| ended.contains(k)));
        assert!(!ended.contains(&here));
    }
}
