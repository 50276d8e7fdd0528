//! The time daemons measure their timers and graces by.
//!
//! Tokio's clock: in a daemon it is the system's monotonic clock; under
//! the whole-cluster simulator (a paused tokio runtime) it is the virtual
//! time the simulator advances, so a heartbeat grace or a report interval
//! passes when the simulated seconds pass, not the real ones. Durations
//! measured only for perf counters may use `std::time::Instant` directly.

use std::time::Instant;

/// Now, on the runtime's clock (`std::time::Instant::now()` outside a
/// paused runtime).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Time since `t` (a reading of [`now`]) on the same clock; zero if `t`
/// is in the future. Use this, not `Instant::elapsed`, for timers: the
/// latter reads the system clock even under a paused runtime.
pub fn since(t: Instant) -> std::time::Duration {
    now().saturating_duration_since(t)
}
