//! Time-window partitions: hourly, daily, weekly and monthly windows cut in an IANA zone.
//!
//! Index arithmetic is O(1): a window's index is computed from its start, never found by
//! enumerating windows. Indices count from the first window and never change as time
//! advances: new windows append.
//!
//! DST rules:
//! - Daily, weekly and monthly windows run from local midnight to local midnight, so a
//!   day is 23 or 25 hours long on a change. Where midnight itself does not exist, the
//!   window starts at the first local instant of that day.
//! - Hourly windows are consecutive hours of real (UTC) time from `start`. Their key is
//!   the local start time. On the fall-back day the repeated local hour gives two
//!   windows; the second's key carries its UTC offset (`2024-11-03-01:00-06:00`) so keys
//!   stay unique. On spring-forward the skipped local hour simply has no window.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hourly => "hourly",
            Granularity::Daily => "daily",
            Granularity::Weekly => "weekly",
            Granularity::Monthly => "monthly",
        }
    }

    pub fn default_format(self) -> &'static str {
        match self {
            Granularity::Hourly => "%Y-%m-%d-%H:%M",
            _ => "%Y-%m-%d",
        }
    }
}

/// A validated time-window partitions definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindows {
    pub granularity: Granularity,
    pub timezone: Tz,
    /// Local start of the first window (midnight for daily and coarser).
    pub start: NaiveDateTime,
    /// How many windows exist at most (those starting before `end`), if bounded.
    pub max_len: Option<u32>,
    /// Windows past the last complete one (1 = include the current, open window).
    pub end_offset: i32,
    pub format: String,
    pub week_starts_on: Weekday,
    /// `start` as an instant; the origin of hourly arithmetic.
    start_utc: DateTime<Utc>,
}

impl TimeWindows {
    /// Builds a definition; `start` must be aligned to the granularity (an hour, a day,
    /// the week's first day, the 1st of a month).
    pub fn new(
        granularity: Granularity,
        timezone: Tz,
        start: NaiveDateTime,
        end: Option<NaiveDateTime>,
        end_offset: i32,
        format: Option<String>,
        week_starts_on: Weekday,
    ) -> Result<Self, (&'static str, String)> {
        let aligned = match granularity {
            Granularity::Hourly => start.time().minute_second_nano() == (0, 0, 0),
            Granularity::Daily => start.time() == NaiveTime::MIN,
            Granularity::Weekly => {
                start.time() == NaiveTime::MIN && start.weekday() == week_starts_on
            }
            Granularity::Monthly => start.time() == NaiveTime::MIN && start.day() == 1,
        };
        if !aligned {
            let expected = match granularity {
                Granularity::Hourly => "the start of an hour".to_owned(),
                Granularity::Daily => "a date".to_owned(),
                Granularity::Weekly => format!("a {week_starts_on:?} (week_starts_on)"),
                Granularity::Monthly => "the first day of a month".to_owned(),
            };
            return Err(("start", format!("start {start} must be {expected}")));
        }
        let start_utc = local_instant(timezone, start).ok_or((
            "start",
            format!("start {start} does not exist in {timezone}"),
        ))?;
        let format = format.unwrap_or_else(|| granularity.default_format().to_owned());
        validate_format(&format).map_err(|m| ("format", m))?;
        let mut windows = Self {
            granularity,
            timezone,
            start,
            max_len: None,
            end_offset,
            format,
            week_starts_on,
            start_utc,
        };
        if let Some(end) = end {
            if end <= start {
                return Err(("end", format!("end {end} must be after start {start}")));
            }
            let end_utc = local_instant(timezone, end)
                .ok_or(("end", format!("end {end} does not exist in {timezone}")))?;
            // Windows starting before `end`.
            let last = windows.index_containing(end_utc - Duration::nanoseconds(1));
            windows.max_len =
                Some(u32::try_from(last + 1).map_err(|_| ("end", "too many windows".to_owned()))?);
        }
        // Keys must round-trip: the format has to identify the window.
        for i in [0i64, 1, 400] {
            let key = windows.key_of_unchecked(i);
            if windows.parse_key(&key) != Some(i) {
                return Err((
                    "format",
                    format!(
                        "format {:?} does not identify a {} window (key {key:?} is ambiguous)",
                        windows.format,
                        granularity.as_str()
                    ),
                ));
            }
        }
        Ok(windows)
    }

    /// Partitions existing at `now`: complete windows, plus `end_offset`, capped by `end`.
    pub fn len_at(&self, now: DateTime<Utc>) -> u32 {
        // The window containing `now` is open; those before it are complete.
        let complete = self.index_containing(now);
        let len = (complete + i64::from(self.end_offset)).max(0);
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.max_len.map_or(len, |max| len.min(max))
    }

    /// The window `[start, end)` of an index (any index, even one that does not exist yet
    /// or lies before the first window; mappings with offsets need those).
    pub fn window(&self, index: i64) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.window_start(index), self.window_start(index + 1))
    }

    pub fn window_start(&self, index: i64) -> DateTime<Utc> {
        match self.granularity {
            Granularity::Hourly => self.start_utc + Duration::hours(index),
            _ => day_start(self.timezone, self.local_start_date(index)),
        }
    }

    fn local_start_date(&self, index: i64) -> NaiveDate {
        let first = self.start.date();
        match self.granularity {
            Granularity::Hourly => unreachable!("hourly windows are not day-aligned"),
            Granularity::Daily => first + Duration::days(index),
            Granularity::Weekly => first + Duration::days(7 * index),
            Granularity::Monthly => {
                let months = i64::from(first.year()) * 12 + i64::from(first.month0()) + index;
                NaiveDate::from_ymd_opt(
                    months.div_euclid(12) as i32,
                    months.rem_euclid(12) as u32 + 1,
                    1,
                )
                .expect("the first of a month exists")
            }
        }
    }

    /// The index of the window containing instant `t` (negative before the first window).
    pub fn index_containing(&self, t: DateTime<Utc>) -> i64 {
        match self.granularity {
            Granularity::Hourly => {
                // Floor, not truncation: an instant just before the start is in window -1.
                let d = t - self.start_utc;
                d.num_nanoseconds().map_or_else(
                    || d.num_seconds().div_euclid(3600),
                    |n| n.div_euclid(3_600_000_000_000),
                )
            }
            _ => {
                let local = t.with_timezone(&self.timezone).date_naive();
                // The day's window may start after midnight (no midnight that day): an
                // instant before it belongs to the previous day.
                let local = if t < day_start(self.timezone, local) {
                    local.pred_opt().unwrap_or(local)
                } else {
                    local
                };
                let first = self.start.date();
                match self.granularity {
                    Granularity::Daily => (local - first).num_days(),
                    Granularity::Weekly => (local - first).num_days().div_euclid(7),
                    Granularity::Monthly => {
                        (i64::from(local.year()) - i64::from(first.year())) * 12
                            + i64::from(local.month0())
                            - i64::from(first.month0())
                    }
                    Granularity::Hourly => unreachable!(),
                }
            }
        }
    }

    pub fn key_of(&self, index: u32) -> String {
        self.key_of_unchecked(i64::from(index))
    }

    fn key_of_unchecked(&self, index: i64) -> String {
        match self.granularity {
            Granularity::Hourly => {
                let start = self.window_start(index).with_timezone(&self.timezone);
                let key = start.format(&self.format).to_string();
                // The second of two windows with the same local start carries its offset.
                match self.timezone.from_local_datetime(&start.naive_local()) {
                    LocalResult::Ambiguous(first, _) if first != start => {
                        format!("{key}{}", start.format("%:z"))
                    }
                    _ => key,
                }
            }
            _ => self
                .local_start_date(index)
                .format(&self.format)
                .to_string(),
        }
    }

    /// The index of a key, whether or not that partition exists yet (`None` when the
    /// string is not a key of this definition).
    pub fn parse_key(&self, key: &str) -> Option<i64> {
        let index = match self.granularity {
            Granularity::Hourly => {
                let instant = parse_hourly_key(self.timezone, &self.format, key)?;
                let secs = (instant - self.start_utc).num_seconds();
                if secs.rem_euclid(3600) != 0 {
                    return None;
                }
                secs / 3600
            }
            _ => {
                let date = parse_date_key(&self.format, key)?;
                let index = self.index_containing(day_start(self.timezone, date));
                if self.local_start_date(index) != date {
                    return None;
                }
                index
            }
        };
        // Only the canonical spelling is a key ("2025-1-5" is not "2025-01-05").
        (self.key_of_unchecked(index) == key).then_some(index)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} from {}, {}",
            self.granularity.as_str(),
            self.key_of(0),
            self.timezone
        )
    }
}

trait MinuteSecondNano {
    fn minute_second_nano(&self) -> (u32, u32, u32);
}

impl MinuteSecondNano for NaiveTime {
    fn minute_second_nano(&self) -> (u32, u32, u32) {
        use chrono::Timelike;
        (self.minute(), self.second(), self.nanosecond())
    }
}

/// The instant of a local time: the earlier one when ambiguous, `None` in a DST gap.
fn local_instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The first instant of a local date: midnight, or the first hour after a gap.
fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    (0..24)
        .find_map(|h| local_instant(tz, midnight + Duration::hours(h)))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

fn parse_date_key(format: &str, key: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(key, format)
        .ok()
        // Formats without a day (e.g. "%Y-%m" for months) name the first of the month.
        .or_else(|| NaiveDate::parse_from_str(&format!("{key}|01"), &format!("{format}|%d")).ok())
}

fn parse_hourly_key(tz: Tz, format: &str, key: &str) -> Option<DateTime<Utc>> {
    if let Ok(local) = NaiveDateTime::parse_from_str(key, format) {
        return local_instant(tz, local);
    }
    // The second of a repeated hour: the key ends with its offset, e.g. "-06:00".
    let split = key.len().checked_sub(6)?;
    let (local, offset) = key.split_at(split);
    let local = NaiveDateTime::parse_from_str(local, format).ok()?;
    let with_offset = DateTime::parse_from_str(
        &format!("{} {offset}", local.format("%Y-%m-%dT%H:%M:%S")),
        "%Y-%m-%dT%H:%M:%S %:z",
    )
    .ok()?;
    Some(with_offset.with_timezone(&Utc))
}

fn validate_format(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!(
            "invalid key format {format:?} (chrono strftime syntax, e.g. \"%Y-%m-%d\")"
        ));
    }
    if format.contains('|') {
        return Err(
            "a key format must not contain '|' (it separates the dimensions of multi keys)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chicago() -> Tz {
        "America/Chicago".parse().unwrap()
    }

    fn daily(tz: Tz) -> TimeWindows {
        let start = NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_time(NaiveTime::MIN);
        TimeWindows::new(Granularity::Daily, tz, start, None, 0, None, Weekday::Mon).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn daily_windows_are_23_and_25_hours_on_dst_days() {
        let d = daily(chicago());
        let spring = d.parse_key("2024-03-10").unwrap();
        let (s, e) = d.window(spring);
        assert_eq!(e - s, Duration::hours(23));
        let fall = d.parse_key("2024-11-03").unwrap();
        let (s, e) = d.window(fall);
        assert_eq!(e - s, Duration::hours(25));
        assert_eq!(s, utc("2024-11-03T05:00:00Z"));
    }

    #[test]
    fn len_counts_complete_windows_only() {
        let d = daily(chicago());
        // 2024-01-03 05:59Z is still Jan 2 in Chicago: Jan 1 is the only complete day.
        assert_eq!(d.len_at(utc("2024-01-03T05:59:00Z")), 1);
        assert_eq!(d.len_at(utc("2024-01-03T06:00:00Z")), 2);
        assert_eq!(d.len_at(utc("2023-06-01T00:00:00Z")), 0);
    }

    #[test]
    fn hourly_keys_stay_unique_on_fall_back() {
        let start = NaiveDate::from_ymd_opt(2024, 11, 2)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let h = TimeWindows::new(
            Granularity::Hourly,
            chicago(),
            start,
            None,
            0,
            None,
            Weekday::Mon,
        )
        .unwrap();
        let keys: Vec<String> = (24..28).map(|i| h.key_of(i)).collect();
        assert_eq!(
            keys,
            [
                "2024-11-03-00:00",
                "2024-11-03-01:00",
                "2024-11-03-01:00-06:00",
                "2024-11-03-02:00"
            ]
        );
        for (i, k) in (24..28).zip(&keys) {
            assert_eq!(h.parse_key(k), Some(i64::from(i)), "{k}");
        }
    }

    #[test]
    fn hourly_skips_the_missing_hour_on_spring_forward() {
        let start = NaiveDate::from_ymd_opt(2024, 3, 10)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let h = TimeWindows::new(
            Granularity::Hourly,
            chicago(),
            start,
            None,
            0,
            None,
            Weekday::Mon,
        )
        .unwrap();
        assert_eq!(h.key_of(1), "2024-03-10-01:00");
        assert_eq!(h.key_of(2), "2024-03-10-03:00");
        assert_eq!(h.parse_key("2024-03-10-02:00"), None);
    }

    /// Regression: hourly arithmetic truncated toward zero, so an instant just before the
    /// first window counted as inside it (found by `time_window_mapping_is_exactly_window_overlap`).
    #[test]
    fn hourly_index_just_before_the_start_is_minus_one() {
        let start = NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let h = TimeWindows::new(
            Granularity::Hourly,
            chicago(),
            start,
            None,
            0,
            None,
            Weekday::Mon,
        )
        .unwrap();
        let first = h.window(0).0;
        assert_eq!(h.index_containing(first - Duration::nanoseconds(1)), -1);
        assert_eq!(h.index_containing(first), 0);
    }

    #[test]
    fn alignment_and_end_are_checked() {
        let wed = NaiveDate::from_ymd_opt(2024, 1, 3)
            .unwrap()
            .and_time(NaiveTime::MIN);
        let err = TimeWindows::new(
            Granularity::Weekly,
            chicago(),
            wed,
            None,
            0,
            None,
            Weekday::Mon,
        )
        .unwrap_err();
        assert_eq!(err.0, "start");
        let jan1 = NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_time(NaiveTime::MIN);
        let jan11 = NaiveDate::from_ymd_opt(2024, 1, 11)
            .unwrap()
            .and_time(NaiveTime::MIN);
        let d = TimeWindows::new(
            Granularity::Daily,
            chicago(),
            jan1,
            Some(jan11),
            0,
            None,
            Weekday::Mon,
        )
        .unwrap();
        assert_eq!(d.max_len, Some(10));
        assert_eq!(d.len_at(utc("2030-01-01T00:00:00Z")), 10);
        let err = TimeWindows::new(
            Granularity::Monthly,
            chicago(),
            jan1,
            None,
            0,
            Some("%Y".into()),
            Weekday::Mon,
        )
        .unwrap_err();
        assert_eq!(err.0, "format");
    }

    #[test]
    fn monthly_keys_with_a_month_only_format() {
        let jan1 = NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_time(NaiveTime::MIN);
        let m = TimeWindows::new(
            Granularity::Monthly,
            chicago(),
            jan1,
            None,
            0,
            Some("%Y-%m".into()),
            Weekday::Mon,
        )
        .unwrap();
        assert_eq!(m.key_of(13), "2025-02");
        assert_eq!(m.parse_key("2025-02"), Some(13));
        assert_eq!(m.len_at(utc("2024-03-01T06:00:00Z")), 2);
    }
}
