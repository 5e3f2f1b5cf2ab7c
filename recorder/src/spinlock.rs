//! The lock around a recording's state.
//!
//! Every event takes it, with the GIL held; the only taker without the GIL
//! is the flusher thread, every 50 ms. An atomic read-modify-write per
//! event — even `std::sync::Mutex`'s uncontended path, or one
//! compare-exchange — is a locked instruction, which also waits for the
//! core's pending stores (the event row just written): measured with
//! `perf` and by alternating builds, 5–7% of a recorded program's time.
//!
//! So the lock is asymmetric. Takers holding the GIL are serialised by it:
//! among themselves a plain load and store suffice. The flusher is kept out
//! by Dekker's algorithm with the heavy fence on its own, rare, side: it
//! announces itself, then `membarrier(2)` makes every running thread of the
//! process pass a full memory barrier, so that either it sees an event's
//! claim, or the event sees its announcement and backs off. Where
//! `membarrier` cannot be used (another OS, a kernel or sandbox without it,
//! a free-threaded CPython), every taker uses a compare-exchange instead.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering, compiler_fence};

pub(crate) struct SpinLock<T> {
    /// Taken by a taker holding the GIL (or by anyone, without `fenced`).
    held: AtomicBool,
    /// Taken, or about to be, by the taker without the GIL (with `fenced`).
    unattached: AtomicBool,
    /// The asymmetric protocol is on (see the module doc).
    fenced: bool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, and one guard exists
// at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) fn new(value: T) -> SpinLock<T> {
        SpinLock {
            held: AtomicBool::new(false),
            unattached: AtomicBool::new(false),
            fenced: process_barrier::available(),
            value: UnsafeCell::new(value),
        }
    }

    /// The lock, if it is free now, for a caller holding the GIL.
    ///
    /// # Safety
    /// Calls of this method on one lock never overlap: their callers hold
    /// one common lock (the GIL) across the call.
    #[inline]
    pub(crate) unsafe fn try_lock_serialised(&self) -> Option<SpinGuard<'_, T>> {
        if !self.fenced {
            return self.try_take(&self.held);
        }
        // Serialised callers: nobody else takes `held` between this load
        // and store.
        if self.held.load(Ordering::Relaxed) {
            return None;
        }
        self.held.store(true, Ordering::Relaxed);
        // The hardware half of this fence is the other side's membarrier.
        compiler_fence(Ordering::SeqCst);
        if self.unattached.load(Ordering::Acquire) {
            self.held.store(false, Ordering::Release);
            return None;
        }
        Some(SpinGuard {
            lock: self,
            flag: &self.held,
        })
    }

    /// The lock, if it is free now, for a caller that may not hold the GIL
    /// (the flusher thread: one caller at a time).
    pub(crate) fn try_lock_unattached(&self) -> Option<SpinGuard<'_, T>> {
        if !self.fenced {
            return self.try_take(&self.held);
        }
        let guard = self.try_take(&self.unattached)?;
        if !process_barrier::fence() || self.held.load(Ordering::Acquire) {
            return None; // (dropping the guard withdraws the announcement)
        }
        Some(guard)
    }

    fn try_take<'a>(&'a self, flag: &'a AtomicBool) -> Option<SpinGuard<'a, T>> {
        // The guard is made only on success: a guard made and dropped on
        // failure would clear the flag its holder set.
        flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then(|| SpinGuard { lock: self, flag })
    }

    /// Returns once the lock looks free, yielding the CPU meanwhile: for a
    /// caller that released the GIL to wait, and tries again with it.
    pub(crate) fn wait_until_free(&self) {
        while self.held.load(Ordering::Acquire) || self.unattached.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }

    /// Frees the lock whoever holds it: for a child process after `fork()`,
    /// where the only thread is the one that forked, so a holder (the
    /// flusher thread, mid-flush when the parent forked) no longer exists.
    ///
    /// # Safety
    /// No guard of this lock may be alive in the calling process.
    pub(crate) unsafe fn reset_after_fork(&self) {
        self.held.store(false, Ordering::Release);
        self.unattached.store(false, Ordering::Release);
    }
}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// The flag this guard set.
    flag: &'a AtomicBool,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Release);
    }
}

/// `membarrier(2)`'s private expedited command: a full memory barrier on
/// every CPU running a thread of this process.
#[cfg(all(target_os = "linux", not(Py_GIL_DISABLED)))]
pub(crate) mod process_barrier {
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    fn membarrier(command: libc::c_long) -> bool {
        // SAFETY: membarrier takes two integers and touches no memory of ours.
        unsafe { libc::syscall(libc::SYS_membarrier, command, 0 as libc::c_long) == 0 }
    }

    /// Registers the process for [`fence`], once (a forked child inherits
    /// the registration); false when the kernel, or a sandbox, refuses it.
    /// Registering waits for an RCU grace period when the process has other
    /// threads (~20 ms measured here, against ~10 µs without): the module's
    /// import calls this first, before the recorder starts its threads.
    pub(crate) fn available() -> bool {
        static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *REGISTERED.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
    }

    /// False if the barrier could not be made.
    pub(super) fn fence() -> bool {
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
    }
}

/// Without `membarrier` (or the GIL), every taker uses a compare-exchange.
#[cfg(not(all(target_os = "linux", not(Py_GIL_DISABLED))))]
pub(crate) mod process_barrier {
    pub(crate) fn available() -> bool {
        false
    }

    pub(super) fn fence() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;
    use std::sync::{Arc, Mutex};

    /// Threads serialised by a mutex (standing for the GIL) and one thread
    /// without it increment a counter under the lock: no increment is lost.
    fn count_with(fenced: bool) {
        let mut lock = SpinLock::new(0u64);
        lock.fenced &= fenced;
        let (lock, gil) = (Arc::new(lock), Arc::new(Mutex::new(())));
        let attached: Vec<_> = (0..3)
            .map(|_| {
                let (lock, gil) = (Arc::clone(&lock), Arc::clone(&gil));
                std::thread::spawn(move || {
                    let mut done = 0;
                    while done < 20_000 {
                        let _gil = gil.lock().expect("the test's GIL");
                        // SAFETY: every caller holds `gil`.
                        if let Some(mut count) = unsafe { lock.try_lock_serialised() } {
                            *count += 1;
                            done += 1;
                        }
                    }
                })
            })
            .collect();
        let unattached = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                let mut done = 0;
                while done < 2_000 {
                    if let Some(mut count) = lock.try_lock_unattached() {
                        *count += 1;
                        done += 1;
                    } else {
                        lock.wait_until_free();
                    }
                }
            })
        };
        for thread in attached.into_iter().chain([unattached]) {
            thread.join().expect("a counting thread panicked");
        }
        // SAFETY: the threads are done.
        assert_eq!(
            *unsafe { lock.try_lock_serialised() }.expect("free"),
            62_000
        );
    }

    #[test]
    fn counts_exactly_with_the_process_barrier() {
        count_with(true);
    }

    #[test]
    fn counts_exactly_with_compare_exchange_only() {
        count_with(false);
    }

    #[test]
    fn either_side_fails_while_the_other_holds_it() {
        for fenced in [true, false] {
            let mut lock = SpinLock::new(());
            lock.fenced &= fenced;
            // SAFETY: one thread.
            let guard = unsafe { lock.try_lock_serialised() }.expect("free");
            assert!(lock.try_lock_unattached().is_none());
            // A failed try leaves the holder's claim in place.
            assert!(lock.try_lock_unattached().is_none());
            // SAFETY: one thread.
            assert!(unsafe { lock.try_lock_serialised() }.is_none());
            assert!(lock.try_lock_unattached().is_none());
            drop(guard);
            let guard = lock.try_lock_unattached().expect("free");
            // SAFETY: one thread.
            assert!(unsafe { lock.try_lock_serialised() }.is_none());
            drop(guard);
            // SAFETY: one thread.
            assert!(unsafe { lock.try_lock_serialised() }.is_some());
        }
    }
}
