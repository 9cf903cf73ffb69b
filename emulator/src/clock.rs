//! The emulator's clock: the system clock shifted by an offset that tests
//! set, so that they can act as a client whose clock is ahead of or behind
//! Okta's.
//!
//! Every time check (client assertions, DPoP proofs, access-token expiry),
//! every `created` and `lastUpdated` value, and the `Date` and
//! `X-Rate-Limit-Reset` headers read this clock. Rate-limit windows measure
//! elapsed time with the monotonic clock, which the offset does not move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// The system clock plus a signed offset in seconds.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_seconds: AtomicI64,
}

impl Clock {
    /// Returns the offset in seconds; positive values put the emulator
    /// ahead of the system clock.
    pub(crate) fn offset_seconds(&self) -> i64 {
        self.offset_seconds.load(Ordering::Relaxed)
    }

    /// Sets the offset in seconds.
    pub(crate) fn set_offset_seconds(&self, offset: i64) {
        self.offset_seconds.store(offset, Ordering::Relaxed);
    }

    /// Returns the shifted time.
    pub(crate) fn now_system(&self) -> SystemTime {
        shift(SystemTime::now(), self.offset_seconds())
    }

    /// Returns the shifted time as whole UTC epoch seconds, the unit of JWT
    /// claims such as `iat` and `exp`.
    pub(crate) fn now_unix(&self) -> i64 {
        unix_seconds(self.now_system())
    }

    /// Returns the shifted time in UTC, truncated to milliseconds so that a
    /// stored value and its ISO-8601 rendering agree.
    pub(crate) fn now_utc(&self) -> OffsetDateTime {
        let now = OffsetDateTime::from(self.now_system());
        let millis = now.millisecond();
        now.replace_millisecond(millis)
            .expect("a millisecond read from a valid time is in range")
    }
}

fn shift(at: SystemTime, offset_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(offset_seconds.unsigned_abs());
    let shifted = if offset_seconds >= 0 {
        at.checked_add(magnitude)
    } else {
        at.checked_sub(magnitude)
    };
    // An offset beyond the range of `SystemTime` leaves the time unshifted.
    shifted.unwrap_or(at)
}

/// Converts a time to whole epoch seconds, rounding down; times before
/// 1970 become negative.
pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            if before.subsec_nanos() > 0 {
                -whole - 1
            } else {
                -whole
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_shifts_both_ways() {
        let clock = Clock::default();
        let real = unix_seconds(SystemTime::now());

        clock.set_offset_seconds(30);
        let ahead = clock.now_unix();
        assert!((ahead - real - 30).abs() <= 1, "{ahead} vs {real}");

        clock.set_offset_seconds(-30);
        let behind = clock.now_unix();
        assert!((behind - real + 30).abs() <= 1, "{behind} vs {real}");
        assert_eq!(clock.offset_seconds(), -30);
    }

    #[test]
    fn unix_seconds_rounds_down() {
        let after = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(unix_seconds(after), 1);
        let before = UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(unix_seconds(before), -2);
    }

    #[test]
    fn huge_offset_leaves_time_unshifted() {
        let now = SystemTime::now();
        assert_eq!(shift(now, i64::MAX), now);
    }
}
