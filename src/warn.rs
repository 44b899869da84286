//! Rate-limited warnings: a port scanner, a misconfigured client or a DNS list that fails
//! for every message must not flood the log. Each limiter allows a burst per window and
//! reports how many it held back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warnings allowed per [`WARN_WINDOW`] by one limiter.
pub const WARN_BURST: u32 = 10;
pub const WARN_WINDOW: Duration = Duration::from_secs(60);

pub struct WarnLimiter {
    /// Window start, warnings in this window, warnings suppressed since the last one logged.
    state: Mutex<(Instant, u32, u64)>,
}

impl Default for WarnLimiter {
    fn default() -> Self {
        WarnLimiter {
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }
}

impl WarnLimiter {
    /// Whether to log now, and how many warnings were suppressed before this one.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(s.0) >= WARN_WINDOW {
            let suppressed = s.2;
            *s = (now, 1, 0);
            return Some(suppressed);
        }
        if s.1 < WARN_BURST {
            s.1 += 1;
            Some(0)
        } else {
            s.2 += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_silence() {
        let l = WarnLimiter::default();
        let allowed = (0..100).filter(|_| l.allow().is_some()).count();
        assert_eq!(allowed, WARN_BURST as usize);
    }
}
