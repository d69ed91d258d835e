//! Policies attached to an asset: automation, freshness, retries, backfill.
//!
//! Each comes in two forms: the `*Spec` as written in TOML (strings kept raw so that the
//! validator, not serde, explains a bad value), and the validated runtime form.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// A validated cron schedule in a timezone.
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    timezone: Tz,
    cron: croner::Cron,
}

impl CronSchedule {
    pub fn parse(expression: &str, timezone: Tz) -> Result<Self, String> {
        let cron = croner::Cron::from_str(expression)
            .map_err(|e| format!("invalid cron expression {expression:?}: {e}"))?;
        Ok(Self {
            expression: expression.to_owned(),
            timezone,
            cron,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last tick at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::{SubsecRound as _, Timelike as _};
        // croner carries the sub-second part of `at` into the tick; a tick is a whole
        // second, or each call would name a "new" tick.
        let local = at.trunc_subsecs(0).with_timezone(&self.timezone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .and_then(|t| t.with_nanosecond(0))
            .map(|t| t.with_timezone(&Utc))
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CronSchedule({:?} in {})",
            self.expression, self.timezone
        )
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

impl Eq for CronSchedule {}

pub fn parse_timezone(raw: Option<&str>) -> Result<Tz, String> {
    match raw {
        None => Ok(Tz::UTC),
        Some(name) => name.parse::<Tz>().map_err(|_| {
            format!("unknown timezone {name:?} (expected an IANA name such as \"America/Chicago\")")
        }),
    }
}

/// Compact display of a duration: "26h", "1h30m", "90s" (what users write, unlike
/// humantime's "1day 2h").
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// An age for people, to the two largest units: "3h 5m", "2d 4h", "45s"; a negative age
/// shows as "0s". Unlike [`format_duration`], approximate: for how old data is or how late
/// a partition is, never for a duration to be parsed back.
pub fn format_age(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, minutes) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The longest duration a definition or an SLA may name: 100 years. Anything longer is
/// a typo, and would overflow date arithmetic where it meets a clock.
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let shown = if raw.len() > 40 {
        format!("{:?}...", raw.chars().take(40).collect::<String>())
    } else {
        format!("{raw:?}")
    };
    let d = humantime::parse_duration(raw).map_err(|e| {
        format!(
            "invalid duration {shown}: {e} (expected e.g. \"90s\", \"30m\", \"26h\", \"1h 30m\")"
        )
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "duration {shown} is longer than the 100 years allowed"
        ));
    }
    Ok(d)
}

// ----- automation -----

/// How an asset's refreshes are triggered, as written: `"manual"`, `"eager"` or
/// `{ cron = "...", timezone = "..." }`.
#[derive(Debug, Clone, PartialEq, schemars::JsonSchema)]
#[schemars(untagged)]
pub enum AutomationSpec {
    Mode(AutomationMode),
    Cron(CronAutomationSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AutomationMode {
    /// Only when a person (or a backfill) asks.
    Manual,
    /// Whenever a partition is missing or stale.
    Eager,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CronAutomationSpec {
    /// At each tick, refresh what is stale.
    pub cron: String,
    /// IANA timezone of the cron expression; default UTC.
    pub timezone: Option<String>,
}

impl<'de> Deserialize<'de> for AutomationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AutomationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"manual\", \"eager\" or { cron = \"...\", timezone = \"...\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                AutomationMode::deserialize(serde::de::value::StrDeserializer::<E>::new(v))
                    .map(AutomationSpec::Mode)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                CronAutomationSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(AutomationSpec::Cron)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Automation {
    #[default]
    Manual,
    Eager,
    Cron(Box<CronSchedule>),
}

impl Automation {
    pub fn from_spec(spec: &AutomationSpec) -> Result<Self, String> {
        match spec {
            AutomationSpec::Mode(AutomationMode::Manual) => Ok(Automation::Manual),
            AutomationSpec::Mode(AutomationMode::Eager) => Ok(Automation::Eager),
            AutomationSpec::Cron(c) => {
                let tz = parse_timezone(c.timezone.as_deref())?;
                Ok(Automation::Cron(Box::new(CronSchedule::parse(
                    &c.cron, tz,
                )?)))
            }
        }
    }
}

impl fmt::Display for Automation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Automation::Manual => f.write_str("manual"),
            Automation::Eager => f.write_str("eager"),
            Automation::Cron(s) => write!(f, "cron {} {}", s.expression(), s.timezone()),
        }
    }
}

// ----- freshness -----

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreshnessSpec {
    /// How long after its data became due the newest data may be (e.g. "26h").
    pub max_lag: Option<String>,
    /// Warn from this lag on; must be below `max_lag`.
    pub warn_lag: Option<String>,
    /// By each tick, a materialization from within `lower_bound` before it must exist.
    pub deadline: Option<DeadlineSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadlineSpec {
    pub cron: String,
    pub timezone: Option<String>,
    pub lower_bound: String,
}

/// A validated freshness SLA; at least one of `lag` and `deadline` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshnessPolicy {
    pub lag: Option<LagPolicy>,
    pub deadline: Option<DeadlinePolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagPolicy {
    pub max_lag: Duration,
    pub warn_lag: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlinePolicy {
    pub schedule: CronSchedule,
    pub lower_bound: Duration,
}

impl FreshnessPolicy {
    /// Validates a spec; errors are `(field, message)` with fields relative to the table.
    pub fn from_spec(spec: &FreshnessSpec) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut field = |name: &str, r: Result<Duration, String>| {
            r.map_err(|m| errors.push((name.to_owned(), m))).ok()
        };
        let max_lag = spec
            .max_lag
            .as_deref()
            .map(parse_duration)
            .and_then(|r| field("max_lag", r));
        let warn_lag = spec
            .warn_lag
            .as_deref()
            .map(parse_duration)
            .and_then(|r| field("warn_lag", r));
        let mut lag = None;
        match (max_lag, warn_lag, &spec.max_lag, &spec.warn_lag) {
            (Some(max), Some(warn), _, _) if warn >= max => errors.push((
                "warn_lag".into(),
                format!(
                    "warn_lag ({}) must be below max_lag ({})",
                    format_duration(warn),
                    format_duration(max)
                ),
            )),
            (Some(max_lag), warn_lag, _, _) => lag = Some(LagPolicy { max_lag, warn_lag }),
            (None, _, None, Some(_)) => {
                errors.push(("warn_lag".into(), "warn_lag needs a max_lag".into()))
            }
            _ => {}
        }
        let mut deadline = None;
        if let Some(d) = &spec.deadline {
            let schedule = parse_timezone(d.timezone.as_deref())
                .and_then(|tz| CronSchedule::parse(&d.cron, tz));
            let lower_bound = parse_duration(&d.lower_bound);
            match (schedule, lower_bound) {
                (Ok(schedule), Ok(lower_bound)) => {
                    deadline = Some(DeadlinePolicy {
                        schedule,
                        lower_bound,
                    })
                }
                (s, l) => {
                    if let Err(m) = s {
                        errors.push(("deadline".into(), m));
                    }
                    if let Err(m) = l {
                        errors.push(("deadline.lower_bound".into(), m));
                    }
                }
            }
        }
        if spec.max_lag.is_none() && spec.deadline.is_none() {
            errors.push((
                "".into(),
                "a freshness policy needs max_lag or deadline".into(),
            ));
        }
        if errors.is_empty() {
            Ok(Self { lag, deadline })
        } else {
            Err(errors)
        }
    }
}

impl fmt::Display for FreshnessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(lag) = &self.lag {
            parts.push(format!("max_lag {}", format_duration(lag.max_lag)));
        }
        if let Some(d) = &self.deadline {
            parts.push(format!(
                "deadline {} {} (built within {})",
                d.schedule.expression(),
                d.schedule.timezone(),
                format_duration(d.lower_bound)
            ));
        }
        f.write_str(&parts.join(", "))
    }
}

// ----- retries and backfill -----

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts after the first; default 0.
    #[serde(default)]
    pub max: u32,
    /// Delay before the first retry, doubled at each further one; default "30s".
    pub backoff: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max: u32,
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max: 0,
            backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): exponential, capped at a day
    /// so that a large `max` never overflows.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(86_400))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillSpec {
    #[serde(default)]
    pub policy: BackfillMode,
    /// With `single_run`: the most partitions one run may cover.
    pub max_partitions_per_run: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackfillMode {
    #[default]
    PerPartition,
    SingleRun,
}

/// How a backfill of this asset is cut into runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackfillPolicy {
    /// One run per partition.
    #[default]
    PerPartition,
    /// One run per contiguous range of at most `max_partitions_per_run` partitions.
    SingleRun { max_partitions_per_run: u32 },
}

impl BackfillPolicy {
    pub fn from_spec(spec: &BackfillSpec) -> Result<Self, (String, String)> {
        match (spec.policy, spec.max_partitions_per_run) {
            (BackfillMode::PerPartition, None) => Ok(BackfillPolicy::PerPartition),
            (BackfillMode::PerPartition, Some(_)) => Err((
                "max_partitions_per_run".into(),
                "max_partitions_per_run only applies to policy = \"single_run\"".into(),
            )),
            (BackfillMode::SingleRun, Some(0)) => {
                Err(("max_partitions_per_run".into(), "must be at least 1".into()))
            }
            (BackfillMode::SingleRun, max) => Ok(BackfillPolicy::SingleRun {
                max_partitions_per_run: max.unwrap_or(u32::MAX),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freshness(toml_text: &str) -> Result<FreshnessPolicy, Vec<(String, String)>> {
        FreshnessPolicy::from_spec(&toml::from_str(toml_text).unwrap())
    }

    #[test]
    fn a_cron_tick_is_the_same_whenever_it_is_asked() {
        let s = CronSchedule::parse("30 6 * * *", chrono_tz::America::Chicago).unwrap();
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let a = s.latest_at_or_before(at("2026-11-25T06:45:14.572903Z"));
        let b = s.latest_at_or_before(at("2026-11-25T07:10:01.000001Z"));
        assert_eq!(a, Some(at("2026-11-24T12:30:00Z")));
        assert_eq!(a, b);
    }

    #[test]
    fn freshness_validates_each_field() {
        let ok = freshness("max_lag = \"26h\"\nwarn_lag = \"20h\"").unwrap();
        assert_eq!(ok.lag.unwrap().max_lag, Duration::from_secs(26 * 3600));
        let errs = freshness("max_lag = \"26 hours\"\nwarn_lag = \"30h\"").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        let errs = freshness("max_lag = \"1h\"\nwarn_lag = \"2h\"").unwrap_err();
        assert_eq!(errs[0].0, "warn_lag");
        let errs =
            freshness("deadline = { cron = \"0 7 * *\", lower_bound = \"3h\" }").unwrap_err();
        assert_eq!(errs[0].0, "deadline");
        let errs = freshness(
            "deadline = { cron = \"0 7 * * *\", timezone = \"Mars/Base\", lower_bound = \"3x\" }",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].1.contains("Mars/Base"));
    }

    #[test]
    fn automation_accepts_strings_and_cron_tables() {
        #[derive(Debug, Deserialize)]
        struct T {
            a: AutomationSpec,
        }
        let t: T = toml::from_str("a = \"eager\"").unwrap();
        assert_eq!(Automation::from_spec(&t.a).unwrap(), Automation::Eager);
        let t: T =
            toml::from_str("a = { cron = \"0 2 * * *\", timezone = \"America/Chicago\" }").unwrap();
        assert!(matches!(
            Automation::from_spec(&t.a).unwrap(),
            Automation::Cron(_)
        ));
        assert!(toml::from_str::<T>("a = \"sometimes\"").is_err());
        let err = toml::from_str::<T>("a = { cron = \"0 2 * * *\", tz = \"UTC\" }").unwrap_err();
        assert!(err.message().contains("unknown field `tz`"), "{err}");
    }

    #[test]
    fn cron_ticks_follow_the_timezone_across_dst() {
        let tz: Tz = "America/Chicago".parse().unwrap();
        let s = CronSchedule::parse("0 7 * * *", tz).unwrap();
        // 2025-03-09 is the spring-forward day: 07:00 CDT is 12:00 UTC, the day before 13:00 UTC.
        let before: DateTime<Utc> = "2025-03-08T14:00:00Z".parse().unwrap();
        assert_eq!(
            s.next_after(before).unwrap(),
            "2025-03-09T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            s.latest_at_or_before("2025-03-09T12:00:00Z".parse().unwrap())
                .unwrap(),
            "2025-03-09T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn durations_display_as_written() {
        assert_eq!(format_duration(Duration::from_secs(26 * 3600)), "26h");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn ages_display_to_two_units() {
        let age = chrono::Duration::seconds;
        assert_eq!(format_age(age(45)), "45s");
        assert_eq!(format_age(age(0)), "0s");
        assert_eq!(format_age(age(-30)), "0s");
        assert_eq!(format_age(age(5 * 60 + 10)), "5m");
        assert_eq!(format_age(age(3 * 3600 + 5 * 60 + 59)), "3h 5m");
        assert_eq!(format_age(age(3 * 3600)), "3h 0m");
        assert_eq!(format_age(age(2 * 86_400 + 4 * 3600 + 30 * 60)), "2d 4h");
    }

    #[test]
    fn durations_are_bounded_at_100_years() {
        assert_eq!(
            parse_duration("100years").unwrap(),
            MAX_DURATION,
            "humantime's year is 365.25 days"
        );
        for huge in [
            "101y",
            "300000y",
            "9223372036854775807s",
            "18446744073709551615s",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert!(
                e.contains("100 years") || e.contains("invalid"),
                "{huge}: {e}"
            );
        }
        assert!(parse_duration("101y").unwrap_err().contains("100 years"));
        let long = "9".repeat(10_000);
        assert!(
            parse_duration(&long).unwrap_err().len() < 400,
            "no echo of huge input"
        );
    }

    #[test]
    fn retry_backoff_doubles_and_saturates() {
        let p = RetryPolicy {
            max: 5,
            backoff: Duration::from_secs(30),
        };
        assert_eq!(p.delay_before(1), Duration::from_secs(30));
        assert_eq!(p.delay_before(3), Duration::from_secs(120));
        assert_eq!(p.delay_before(200), Duration::from_secs(86_400));
    }
}
