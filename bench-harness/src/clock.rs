//! UTC timestamps without a date library: report directories are named
//! after the UTC time a run started (`2025-01-31T12-00-00Z`, no colons, so
//! the name is valid on every filesystem), and `results.json` records RFC 3339.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    pub fn now() -> Utc {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Utc::from_unix(secs as i64)
    }

    /// Seconds since 1970-01-01T00:00:00Z to a calendar date (the access
    /// log's `civil_from_days`, exact for every Gregorian date).
    pub fn from_unix(secs: i64) -> Utc {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = proxy_core::access_log::civil_from_days(days);
        Utc {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `2025-01-31T12:00:00Z`
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2025-01-31T12-00-00Z`: the report directory's name.
    pub fn dir_name(&self) -> String {
        self.rfc3339().replace(':', "-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_become_calendar_dates() {
        assert_eq!(Utc::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day in a year divisible by 400).
        assert_eq!(
            Utc::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            Utc::from_unix(1_700_000_000).rfc3339(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            Utc::from_unix(4_102_444_799).rfc3339(),
            "2099-12-31T23:59:59Z"
        );
    }

    #[test]
    fn directory_names_have_no_colons() {
        assert_eq!(
            Utc::from_unix(1_700_000_000).dir_name(),
            "2023-11-14T22-13-20Z"
        );
    }
}
