//! Timestamps as the API writes them, with arithmetic that saturates instead of panicking.
//!
//! Durations in objects and requests come from clients (`gracePeriodSeconds`,
//! `terminationGracePeriodSeconds`, `activeDeadlineSeconds`, ...) and may be anywhere in
//! `i64`. Adding one to a timestamp saturates at what RFC 3339 can write (years 1 to 9999),
//! so "in a very long time" stays a valid, very late timestamp.

use jiff::{SignedDuration, Timestamp};

/// `ts` as upstream prints timestamps: RFC 3339, whole seconds, UTC.
pub fn rfc3339(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The current time as upstream prints timestamps.
pub fn now_rfc3339() -> String {
    rfc3339(Timestamp::now())
}

/// The earliest time RFC 3339 can write: 0001-01-01T00:00:00Z.
fn earliest() -> Timestamp {
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `ts` plus `secs` seconds (negative goes back), saturating at what RFC 3339 can write
/// (years 1 to 9999).
pub fn add_seconds(ts: Timestamp, secs: i64) -> Timestamp {
    let t = ts.checked_add(SignedDuration::from_secs(secs)).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    t.max(earliest())
}

/// About a century: "later than anything that will happen" for deadlines.
const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, or a century after `now` when that overflows (a deadline of any duration a
/// client asked for is representable, just very late).
pub fn instant_after(now: std::time::Instant, d: std::time::Duration) -> std::time::Instant {
    now.checked_add(d.min(CENTURY)).unwrap_or(now)
}

/// `secs` as a `std::time::Duration`: negative values are zero, every `i64` fits.
pub fn duration(secs: i64) -> std::time::Duration {
    std::time::Duration::from_secs(secs.max(0).unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_any_i64_of_seconds_saturates() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(rfc3339(add_seconds(now, 30)), "2023-11-14T22:13:50Z");
        assert_eq!(add_seconds(now, i64::MAX), Timestamp::MAX);
        assert_eq!(rfc3339(add_seconds(now, i64::MIN)), "0001-01-01T00:00:00Z");
        assert_eq!(add_seconds(now, 400_000_000_000), Timestamp::MAX);
        assert!(rfc3339(Timestamp::MAX).starts_with("9999-12-3"));
    }

    #[test]
    fn deadlines_of_any_duration_are_representable() {
        let now = std::time::Instant::now();
        assert_eq!(
            instant_after(now, std::time::Duration::from_secs(5)),
            now + std::time::Duration::from_secs(5)
        );
        assert!(instant_after(now, std::time::Duration::MAX) > now + std::time::Duration::from_secs(3600 * 24 * 365));
    }

    #[test]
    fn durations_are_never_negative() {
        assert_eq!(duration(-5), std::time::Duration::ZERO);
        assert_eq!(duration(i64::MAX).as_secs(), i64::MAX as u64);
    }
}
