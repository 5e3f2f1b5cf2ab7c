//! Events a thread causes while the recorder itself runs Python code — a
//! user `__repr__` under `--unsafe-repr` — are not recorded: the recorder
//! would otherwise record its own calls, and re-enter itself while its state
//! is in use.
//!
//! Only the thread holding the recording's state can render values, so one
//! slot says which thread (if any) is suspended; checking it costs every
//! event one relaxed load.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::ffi;

/// Thread ident of the suspended thread, 0 for none.
static SUSPENDED_THREAD: AtomicU64 = AtomicU64::new(0);

fn current_thread() -> u64 {
    // SAFETY: a plain number (pthread_self).
    #[allow(
        clippy::useless_conversion,
        reason = "c_ulong is 32 bits on some platforms"
    )]
    u64::from(unsafe { ffi::PyThread_get_thread_ident() })
}

/// True when the calling thread's events are not to be recorded now.
pub(crate) fn here() -> bool {
    let suspended = SUSPENDED_THREAD.load(Ordering::Relaxed);
    suspended != 0 && suspended == current_thread()
}

/// Suspends the calling thread's recording until dropped.
pub(crate) struct Suspended {
    previous: u64,
}

impl Suspended {
    pub(crate) fn enter() -> Suspended {
        Suspended {
            previous: SUSPENDED_THREAD.swap(current_thread(), Ordering::Relaxed),
        }
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        SUSPENDED_THREAD.store(self.previous, Ordering::Relaxed);
    }
}
