//! Time as the agent core sees it: a point on the driver's clock, never read from the system.
//!
//! The daemon maps `tokio::time::Instant` onto it (a duration since the agent started); the replay
//! passes its virtual clock. The core compares, adds and subtracts points and nothing else, so the
//! same negotiation runs under both.

use std::fmt;
use std::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time: the duration since the driver's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(Duration);

impl Time {
    /// The origin.
    pub const ZERO: Self = Self(Duration::ZERO);

    /// The point `d` after the origin.
    pub const fn from_duration(d: Duration) -> Self {
        Self(d)
    }

    /// The point `s` seconds after the origin (negative and non-finite values give the origin).
    pub fn from_secs_f64(s: f64) -> Self {
        if s.is_finite() && s > 0.0 {
            Self(Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX))
        } else {
            Self::ZERO
        }
    }

    /// The duration since the origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// Seconds since the origin.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Same as [`Self::saturating_duration_since`] (the name `tokio::time::Instant` uses).
    pub fn duration_since(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl Add<Duration> for Time {
    type Output = Self;

    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(d);
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_secs_f64(1.5);
        assert_eq!((t + Duration::from_millis(500)).as_secs_f64(), 2.0);
        assert_eq!(Time::ZERO.saturating_duration_since(t), Duration::ZERO);
        assert_eq!(
            t.saturating_duration_since(Time::ZERO),
            Duration::from_millis(1500)
        );
        assert_eq!(Time::from_secs_f64(-3.0), Time::ZERO);
        assert_eq!(Time::from_secs_f64(f64::NAN), Time::ZERO);
        assert!(Time::from_duration(Duration::MAX) + Duration::from_secs(1) > t);
    }
}
