//! Event timestamps: nanoseconds since the recording started.
//!
//! Reading the monotonic clock (`clock_gettime` through the vDSO) took about
//! a tenth of a `--no-vars` recording's time, measured with `perf`. Where
//! the kernel itself keeps time with the CPU's time-stamp counter (its
//! clocksource is `tsc`, so the counter is invariant and synchronised across
//! CPUs), events read the counter instead (`rdtsc`, a few cycles) and scale
//! it to nanoseconds. The scale comes from a 200 µs calibration against the
//! monotonic clock at the start and is refined at every re-anchoring (each
//! batch hand-over, at most every 100 ms) over the whole time since the
//! start, so errors never accumulate beyond one interval. Timestamps never
//! go backwards. Anywhere else, `Instant` is read per event.
//!
//! Even so, the counter is the dearest single step of an event: `rdtsc` is
//! ~10 ns in a loop on this project's machine (a VM), and a build that read
//! no clock ran go and richards 12–15% faster. Every event still reads it:
//! reading it every few lines instead would leave the time a slow line took
//! (a `sleep`, I/O, a finalizer) on a later line, and no cheap signal tells
//! a slow line from a fast one beforehand.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Clock {
    start: Instant,
    #[cfg(target_arch = "x86_64")]
    counter: Option<Counter>,
    /// The last timestamp given (they never go backwards).
    last: u64,
}

/// Scaling of the time-stamp counter to nanoseconds since `start`.
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
struct Counter {
    /// Counter and nanoseconds since `start` when it was calibrated from.
    origin: u64,
    origin_ns: u64,
    /// Counter and nanoseconds at the last anchor.
    anchor_ticks: u64,
    anchor_ns: u64,
    /// Nanoseconds per tick, in 32.32 fixed point.
    scale: u64,
}

#[cfg(target_arch = "x86_64")]
fn ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// A (counter, nanoseconds since `start`) pair read as close together as
/// possible: the tightest of a few tries, the counter at its middle.
#[cfg(target_arch = "x86_64")]
fn paired_reading(start: Instant) -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let before = ticks();
        let ns = start.elapsed().as_nanos() as u64;
        let after = ticks();
        let width = after.wrapping_sub(before);
        if width < best.0 {
            best = (width, before.wrapping_add(width / 2), ns);
        }
    }
    (best.1, best.2)
}

#[cfg(target_arch = "x86_64")]
fn kernel_uses_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|source| source.trim() == "tsc")
}

/// Nanoseconds per tick in 32.32 fixed point, from `ns` nanoseconds over
/// `ticks` ticks.
#[cfg(target_arch = "x86_64")]
fn scale(ns: u64, ticks: u64) -> Option<u64> {
    let scale = (u128::from(ns) << 32) / u128::from(ticks.max(1));
    // Any real counter runs between 100 MHz and 100 GHz.
    ((1u128 << 32) / 100..=(10u128 << 32))
        .contains(&scale)
        .then_some(scale as u64)
}

impl Clock {
    pub(crate) fn new() -> Clock {
        #[cfg(target_arch = "x86_64")]
        let use_counter = kernel_uses_tsc();
        let start = Instant::now();
        #[cfg(target_arch = "x86_64")]
        let counter = use_counter
            .then(|| {
                // Both ends of the calibration are paired readings: a
                // thread preempted between `start` and a lone first
                // reading would skew the scale by the time it lost.
                let (origin, origin_ns) = paired_reading(start);
                let calibration = Duration::from_micros(200);
                while start.elapsed() < calibration {
                    std::hint::spin_loop();
                }
                let (now_ticks, ns) = paired_reading(start);
                Some(Counter {
                    origin,
                    origin_ns,
                    anchor_ticks: now_ticks,
                    anchor_ns: ns,
                    scale: scale(ns.saturating_sub(origin_ns), now_ticks.wrapping_sub(origin))?,
                })
            })
            .flatten();
        Clock {
            start,
            #[cfg(target_arch = "x86_64")]
            counter,
            last: 0,
        }
    }

    /// Nanoseconds since the recording started.
    pub(crate) fn now_ns(&mut self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        let ns = match &self.counter {
            Some(c) => {
                let elapsed = ticks().wrapping_sub(c.anchor_ticks);
                c.anchor_ns + ((u128::from(elapsed) * u128::from(c.scale)) >> 32) as u64
            }
            None => self.start.elapsed().as_nanos() as u64,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let ns = self.start.elapsed().as_nanos() as u64;
        self.last = self.last.max(ns);
        self.last
    }

    /// Ties the counter to the monotonic clock again and refines its scale
    /// (cheap; called at each batch hand-over).
    pub(crate) fn reanchor(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(c) = &mut self.counter {
            let (now_ticks, ns) = paired_reading(self.start);
            if let Some(scale) = scale(
                ns.saturating_sub(c.origin_ns),
                now_ticks.wrapping_sub(c.origin),
            ) {
                c.scale = scale;
            }
            c.anchor_ticks = now_ticks;
            c.anchor_ns = ns;
        }
    }

    /// Nanoseconds since the start by the monotonic clock itself.
    pub(crate) fn exact_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;
    use std::time::Duration;

    #[test]
    fn follows_the_monotonic_clock_and_never_goes_back() {
        let mut clock = Clock::new();
        let mut previous = clock.now_ns();
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(20));
            let before = clock.exact_ns();
            let ours = clock.now_ns();
            let after = clock.exact_ns();
            assert!(ours >= previous);
            // The scale is off by far less than 1% (+ 20 µs for the readings).
            let tolerance = before / 100 + 20_000;
            assert!(
                ours + tolerance >= before && ours <= after + tolerance,
                "{before} <= {ours} <= {after}"
            );
            clock.reanchor();
            previous = ours;
        }
    }
}
