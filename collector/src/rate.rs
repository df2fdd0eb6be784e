//! Turning cumulative counters into rates.
//!
//! Kernel and hypervisor counters only grow, except when they do not: `/proc/stat` iowait is
//! known to step backwards a little (it is estimated per CPU and summed), and a counter restarts
//! from zero when a VM restarts or a tap interface is recreated. Two tools handle the two cases:
//! [`Monotonic`] clamps a counter that must never decrease (so a backwards step reads as "no time
//! passed in that mode" instead of a negative fraction), and [`Rate`] turns a counter into a
//! per-second rate and treats any decrease as a reset, yielding no value for that round rather
//! than a spike.

/// A counter clamped to be non-decreasing: reads below the highest value seen so far read as it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Monotonic {
    max: Option<u64>,
}

impl Monotonic {
    /// Feeds a raw reading; returns the clamped value.
    pub fn clamp(&mut self, raw: u64) -> u64 {
        let v = self.max.map_or(raw, |m| m.max(raw));
        self.max = Some(v);
        v
    }
}

/// Per-second rate of a cumulative counter, with reset detection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    prev: Option<u64>,
}

impl Rate {
    /// Feeds a reading taken `dt_s` seconds after the previous one. Returns `None` on the first
    /// reading, after a reset (the value went down) and when `dt_s` is not positive; otherwise the
    /// increase per second.
    pub fn update(&mut self, value: u64, dt_s: f64) -> Option<f64> {
        let prev = self.prev.replace(value)?;
        if value < prev || dt_s <= 0.0 || !dt_s.is_finite() {
            return None;
        }
        Some((value - prev) as f64 / dt_s)
    }
}

/// The increase of a counter between two rounds, with reset detection (no time division).
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta {
    prev: Option<u64>,
}

impl Delta {
    /// Feeds a reading; returns the increase since the previous reading, or `None` on the first
    /// reading and after a reset.
    pub fn update(&mut self, value: u64) -> Option<u64> {
        let prev = self.prev.replace(value)?;
        value.checked_sub(prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn monotonic_holds_the_maximum() {
        let mut m = Monotonic::default();
        assert_eq!(m.clamp(10), 10);
        assert_eq!(m.clamp(8), 10);
        assert_eq!(m.clamp(12), 12);
    }

    #[test]
    fn rate_skips_first_and_resets() {
        let mut r = Rate::default();
        assert_eq!(r.update(100, 1.0), None);
        assert_eq!(r.update(300, 2.0), Some(100.0));
        // VM restarted: counter back near zero: no value this round, then rates resume.
        assert_eq!(r.update(5, 1.0), None);
        assert_eq!(r.update(15, 1.0), Some(10.0));
        assert_eq!(r.update(20, 0.0), None);
    }

    #[test]
    fn delta_detects_reset() {
        let mut d = Delta::default();
        assert_eq!(d.update(7), None);
        assert_eq!(d.update(9), Some(2));
        assert_eq!(d.update(1), None);
        assert_eq!(d.update(4), Some(3));
    }

    proptest! {
        #[test]
        fn rates_are_never_negative(values in proptest::collection::vec(any::<u64>(), 1..50),
                                    dt in 0.001f64..100.0) {
            let mut r = Rate::default();
            let mut m = Monotonic::default();
            let mut last = 0;
            for v in values {
                if let Some(x) = r.update(v, dt) { prop_assert!(x >= 0.0 && x.is_finite()); }
                let c = m.clamp(v);
                prop_assert!(c >= last && c >= v);
                last = c;
            }
        }
    }
}
