//! Freshness: lags measured from when data became due, DST days, deadlines and missed ticks.

mod common;

use cairn_model::partitions::PartitionEnv;
use cairn_reconcile::freshness::{FreshnessStatus, breach_at, evaluate};
use common::{Log, graph, t};

fn status(
    log: &Log<'_>,
    asset: &str,
    now: &str,
) -> (FreshnessStatus, Option<String>, Option<String>) {
    let id = log.graph.id_of(asset).unwrap();
    let def = log.graph.asset(id);
    let env = PartitionEnv {
        now: t(now),
        dynamic: &log.dynamic,
    };
    let f = evaluate(def.freshness.as_ref().unwrap(), def, id, &log.state, env);
    (
        f.status,
        f.since.map(|s| s.to_rfc3339()),
        f.next_change.map(|s| s.to_rfc3339()),
    )
}

/// [`breach_at`] for `asset` at `now`, in RFC 3339.
fn breach(log: &Log<'_>, asset: &str, now: &str) -> Option<String> {
    let id = log.graph.id_of(asset).unwrap();
    let def = log.graph.asset(id);
    let env = PartitionEnv {
        now: t(now),
        dynamic: &log.dynamic,
    };
    breach_at(def.freshness.as_ref().unwrap(), def, id, &log.state, env).map(|b| b.to_rfc3339())
}

const LAGGED: &str = r#"
[[asset]]
key = "raw/adt"
partitions = "daily"
compute = { command = ["true"] }

[asset.freshness]
max_lag = "6h"
warn_lag = "3h"
"#;

#[test]
fn lag_counts_from_the_end_of_the_window_in_its_timezone() {
    let g = graph(LAGGED);
    let mut log = Log::new(&g, "2025-03-09T12:00:00Z");
    for d in 1..=7 {
        log.mat("raw/adt", &format!("2025-03-0{d}"), "v");
    }
    // 2025-03-08 (Chicago) ends at 2025-03-09T06:00Z; warn from 09:00Z, breach from 12:00Z.
    assert_eq!(
        status(&log, "raw/adt", "2025-03-09T08:59:00Z").0,
        FreshnessStatus::Fresh
    );
    assert_eq!(
        status(&log, "raw/adt", "2025-03-09T08:59:00Z").2.as_deref(),
        Some("2025-03-09T09:00:00+00:00")
    );
    let (s, since, next) = status(&log, "raw/adt", "2025-03-09T10:00:00Z");
    assert_eq!(
        (s, since.as_deref(), next.as_deref()),
        (
            FreshnessStatus::Warn,
            Some("2025-03-09T09:00:00+00:00"),
            Some("2025-03-09T12:00:00+00:00")
        )
    );
    assert_eq!(
        status(&log, "raw/adt", "2025-03-09T12:00:01Z").0,
        FreshnessStatus::Breach
    );
    log.mat("raw/adt", "2025-03-08", "v");
    // The spring-forward day (2025-03-09) is 23 hours long: it ends at 05:00Z, not 06:00Z.
    let (s, _, next) = status(&log, "raw/adt", "2025-03-10T07:00:00Z");
    assert_eq!(
        (s, next.as_deref()),
        (FreshnessStatus::Fresh, Some("2025-03-10T08:00:00+00:00"))
    );
    assert_eq!(
        status(&log, "raw/adt", "2025-03-10T08:30:00Z").0,
        FreshnessStatus::Warn
    );
}

#[test]
fn a_missed_window_stays_late_when_the_next_one_comes_due() {
    // A lag longer than the window: a Chicago day ends at 06:00Z and must be built within
    // 26 h. A missed day must not turn fresh again when the following day comes due.
    let g = graph(
        "[[asset]]\nkey = \"raw/adt\"\npartitions = \"daily\"\ncompute = { command = [\"true\"] }\n\n[asset.freshness]\nmax_lag = \"26h\"\nwarn_lag = \"25h\"\n",
    );
    let mut log = Log::new(&g, "2025-02-12T00:00:00Z");
    for d in 1..=7 {
        log.mat("raw/adt", &format!("2025-02-0{d}"), "v");
    }
    // 02-08 was due at 02-09T06:00Z; 02-09 came due at 02-10T06:00Z, unbuilt too.
    assert_eq!(
        status(&log, "raw/adt", "2025-02-10T07:30:00Z").0,
        FreshnessStatus::Warn,
        "25.5 h after the missed day was due, however new the next one is"
    );
    let (s, since, next) = status(&log, "raw/adt", "2025-02-10T08:00:01Z");
    assert_eq!(
        (s, since.as_deref(), next),
        (
            FreshnessStatus::Breach,
            Some("2025-02-10T08:00:00+00:00"),
            None
        )
    );
    assert_eq!(
        status(&log, "raw/adt", "2025-02-11T07:00:00Z").0,
        FreshnessStatus::Breach,
        "a third day coming due changes nothing"
    );
    assert_eq!(
        breach(&log, "raw/adt", "2025-02-09T12:00:00Z").as_deref(),
        Some("2025-02-10T08:00:00+00:00")
    );
    // Built up to date: fresh.
    for day in ["2025-02-08", "2025-02-09", "2025-02-10"] {
        log.mat("raw/adt", day, "v");
    }
    assert_eq!(
        status(&log, "raw/adt", "2025-02-11T07:00:00Z").0,
        FreshnessStatus::Fresh
    );
}

const DEADLINE: &str = r#"
[[asset]]
key = "marts/labs"
compute = { command = ["true"] }

[asset.freshness]
deadline = { cron = "0 7 * * *", timezone = "America/Chicago", lower_bound = "3h" }
"#;

#[test]
fn deadline_needs_a_build_within_the_bound_before_each_tick() {
    let g = graph(DEADLINE);
    let mut log = Log::new(&g, "2025-01-10T11:00:00Z"); // 05:00 Chicago
    log.mat("marts/labs", "", "v");
    // Built at 05:00, the 07:00 (13:00Z) deadline is met; the next tick needs a new build.
    let (s, _, next) = status(&log, "marts/labs", "2025-01-10T14:00:00Z");
    assert_eq!(
        (s, next.as_deref()),
        (FreshnessStatus::Fresh, Some("2025-01-11T13:00:00+00:00"))
    );
    // Three ticks later (Cairn was down): breached since the latest tick, once.
    let (s, since, _) = status(&log, "marts/labs", "2025-01-13T15:00:00Z");
    assert_eq!(
        (s, since.as_deref()),
        (FreshnessStatus::Breach, Some("2025-01-13T13:00:00+00:00"))
    );
    // A build before the bound (03:00 Chicago) does not count for that day.
    log.now = t("2025-01-14T08:30:00Z"); // 02:30 Chicago
    log.mat("marts/labs", "", "v2");
    assert_eq!(
        status(&log, "marts/labs", "2025-01-14T13:30:00Z").0,
        FreshnessStatus::Breach
    );
}

#[test]
fn unpartitioned_lag_is_the_age_of_the_data_and_unknown_before_any() {
    let toml = "[[asset]]\nkey = \"dim/p\"\ncompute = { command = [\"true\"] }\n\n[asset.freshness]\nmax_lag = \"1h\"\n";
    let g = graph(toml);
    let mut log = Log::new(&g, "2025-01-10T10:00:00Z");
    assert_eq!(
        status(&log, "dim/p", "2025-01-10T10:00:00Z").0,
        FreshnessStatus::Unknown
    );
    log.mat("dim/p", "", "v");
    assert_eq!(
        status(&log, "dim/p", "2025-01-10T10:59:00Z").0,
        FreshnessStatus::Fresh
    );
    let (s, since, _) = status(&log, "dim/p", "2025-01-10T11:01:00Z");
    assert_eq!(
        (s, since.as_deref()),
        (FreshnessStatus::Breach, Some("2025-01-10T11:00:00+00:00"))
    );
}

/// When a breach comes if nothing is built: through warn (lag), at the next deadline tick,
/// when it began if it has, never for an asset never built.
#[test]
fn breach_at_follows_the_changes_until_a_breach() {
    let g = graph(LAGGED);
    let mut log = Log::new(&g, "2025-03-09T12:00:00Z");
    for d in 1..=7 {
        log.mat("raw/adt", &format!("2025-03-0{d}"), "v");
    }
    let twelve = Some("2025-03-09T12:00:00+00:00".to_owned());
    // Fresh, then warn at 09:00Z, then breach at 12:00Z.
    assert_eq!(breach(&log, "raw/adt", "2025-03-09T08:59:00Z"), twelve);
    assert_eq!(breach(&log, "raw/adt", "2025-03-09T10:00:00Z"), twelve);
    assert_eq!(breach(&log, "raw/adt", "2025-03-09T13:00:00Z"), twelve);
    // All built: the next window (ending 05:00Z on the spring-forward day) breaches 6 h later.
    log.mat("raw/adt", "2025-03-08", "v");
    assert_eq!(
        breach(&log, "raw/adt", "2025-03-09T13:00:00Z").as_deref(),
        Some("2025-03-10T11:00:00+00:00")
    );

    let g = graph(DEADLINE);
    let mut log = Log::new(&g, "2025-01-10T11:00:00Z");
    assert_eq!(
        breach(&log, "marts/labs", "2025-01-10T12:00:00Z").as_deref(),
        Some("2025-01-09T13:00:00+00:00"),
        "never built: in breach since the latest deadline"
    );
    log.mat("marts/labs", "", "v");
    assert_eq!(
        breach(&log, "marts/labs", "2025-01-10T14:00:00Z").as_deref(),
        Some("2025-01-11T13:00:00+00:00")
    );

    let toml = "[[asset]]\nkey = \"dim/p\"\ncompute = { command = [\"true\"] }\n\n[asset.freshness]\nmax_lag = \"1h\"\n";
    let g = graph(toml);
    let log = Log::new(&g, "2025-01-10T10:00:00Z");
    assert_eq!(
        breach(&log, "dim/p", "2025-01-10T10:00:00Z"),
        None,
        "unknown"
    );
}

/// Durations are bounded when parsed, but a policy built otherwise (a stored value read by
/// another version) must never overflow where it meets the clock: the reconciler and every
/// status query would panic.
#[test]
fn the_longest_durations_saturate_instead_of_overflowing() {
    use cairn_model::policy::{DeadlinePolicy, FreshnessPolicy, LagPolicy};
    let g = graph(&format!(
        "{LAGGED}\n[[asset]]\nkey = \"dim/p\"\ncompute = {{ command = [\"true\"] }}\n\n[asset.freshness]\nmax_lag = \"1h\"\n"
    ));
    let mut log = Log::new(&g, "2025-03-09T12:00:00Z");
    for d in 1..=8 {
        log.mat("raw/adt", &format!("2025-03-0{d}"), "v");
    }
    log.mat("dim/p", "", "v");
    let env = PartitionEnv {
        now: t("2025-03-09T12:00:00Z"),
        dynamic: &log.dynamic,
    };
    let longest = std::time::Duration::from_secs(u64::MAX);
    let schedule = cairn_model::policy::CronSchedule::parse("0 7 * * *", chrono_tz::UTC).unwrap();
    for policy in [
        FreshnessPolicy {
            lag: Some(LagPolicy {
                max_lag: longest,
                warn_lag: Some(longest / 2),
            }),
            deadline: None,
        },
        FreshnessPolicy {
            lag: None,
            deadline: Some(DeadlinePolicy {
                schedule: schedule.clone(),
                lower_bound: longest,
            }),
        },
    ] {
        for asset in ["raw/adt", "dim/p"] {
            let id = g.id_of(asset).unwrap();
            let f = evaluate(&policy, g.asset(id), id, &log.state, env);
            assert_ne!(f.status, FreshnessStatus::Breach, "{asset}: {policy:?}");
            // Following the changes to the end of time neither panics nor loops.
            let _ = breach_at(&policy, g.asset(id), id, &log.state, env);
        }
    }
}
