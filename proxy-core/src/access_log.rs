//! One line per exchange, in Common Log Format plus the duration:
//!
//! ```text
//! 127.0.0.1 - - [23/Nov/2026:15:11:12 +0000] "GET /bytes/10 HTTP/1.1" 200 10 3
//! client    ident user  time                  request line           status bytes ms
//! ```
//!
//! The formatting is here (pure, testable); writing the line is the phase's
//! job. Times are UTC, so no time-zone database is needed.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Everything one access-log line says about an exchange.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub client: IpAddr,
    /// When the exchange started.
    pub start: SystemTime,
    /// `METHOD target VERSION`, or `-` when no request head was parsed.
    pub request_line: String,
    pub status: u16,
    /// Body bytes sent to the client.
    pub body_bytes: u64,
    pub duration: Duration,
}

impl fmt::Display for AccessRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self
            .start
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS[(month as usize).saturating_sub(1) % 12];
        // The request line comes from the client: quote marks and control
        // characters are escaped so one line stays one line.
        let request: String = self
            .request_line
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                c if c.is_control() => vec!['?'],
                c => vec![c],
            })
            .collect();
        write!(
            f,
            "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"{}\" {} {} {}",
            self.client,
            day,
            month,
            year,
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            request,
            self.status,
            self.body_bytes,
            self.duration.as_millis()
        )
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`). Also used by the bench
/// harness to name its reports.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_common_log_format_with_duration() {
        let rec = AccessRecord {
            client: "127.0.0.1".parse().unwrap(),
            // 2026-11-23 15:11:12 UTC
            start: UNIX_EPOCH + Duration::from_secs(1_795_446_672),
            request_line: "GET /bytes/10 HTTP/1.1".into(),
            status: 200,
            body_bytes: 10,
            duration: Duration::from_millis(3),
        };
        assert_eq!(
            rec.to_string(),
            "127.0.0.1 - - [23/Nov/2026:15:11:12 +0000] \"GET /bytes/10 HTTP/1.1\" 200 10 3"
        );
    }

    #[test]
    fn dates_are_right_across_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn quotes_and_control_characters_cannot_forge_lines() {
        let rec = AccessRecord {
            client: "::1".parse().unwrap(),
            start: UNIX_EPOCH,
            request_line: "GET /\"x\n HTTP/1.1".into(),
            status: 400,
            body_bytes: 0,
            duration: Duration::ZERO,
        };
        let line = rec.to_string();
        assert!(line.contains("\"GET /\\\"x? HTTP/1.1\""), "{line}");
    }
}
