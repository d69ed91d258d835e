//! Property tests of partitions definitions, sets and mappings.

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn_model::partitions::{
    DynamicKeys, MappingSpec, PartitionEnv, PartitionMapping, PartitionSet, PartitionsDef,
    PartitionsSpec,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

fn def(toml_text: &str, lookup: &[(&str, &Arc<PartitionsDef>)]) -> Arc<PartitionsDef> {
    let spec: PartitionsSpec = toml::from_str(toml_text).unwrap();
    let find = |name: &str| {
        lookup
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| Arc::clone(d))
    };
    Arc::new(PartitionsDef::from_spec("p", &spec, &find).unwrap())
}

fn mapping(
    toml_text: Option<&str>,
    down: &Arc<PartitionsDef>,
    up: &Arc<PartitionsDef>,
) -> PartitionMapping {
    let spec: Option<MappingSpec> = toml_text.map(|t| toml::from_str(t).unwrap());
    PartitionMapping::resolve(spec.as_ref(), Some(down), Some(up)).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
}

fn daily() -> Arc<PartitionsDef> {
    def(
        "type = \"daily\"\nstart = \"2024-01-01\"\ntimezone = \"America/Chicago\"",
        &[],
    )
}

fn hourly() -> Arc<PartitionsDef> {
    def(
        "type = \"hourly\"\nstart = \"2024-01-01T00:00\"\ntimezone = \"America/Chicago\"",
        &[],
    )
}

fn weekly() -> Arc<PartitionsDef> {
    def(
        "type = \"weekly\"\nstart = \"2024-01-01\"\ntimezone = \"America/Chicago\"",
        &[],
    )
}

fn monthly() -> Arc<PartitionsDef> {
    def(
        "type = \"monthly\"\nstart = \"2024-01-01\"\ntimezone = \"America/Chicago\"",
        &[],
    )
}

fn sources() -> Arc<PartitionsDef> {
    def(
        "type = \"static\"\nkeys = [\"main_lab\", \"reference_lab\", \"point_of_care\"]",
        &[],
    )
}

fn multi(sources: &Arc<PartitionsDef>, daily: &Arc<PartitionsDef>) -> Arc<PartitionsDef> {
    def(
        "type = \"multi\"\ndimensions = [{ name = \"source\", partitions = \"sources\" }, { name = \"date\", partitions = \"daily\" }]",
        &[("sources", sources), ("daily", daily)],
    )
}

/// Upstream windows overlapping the (shifted) downstream window, by brute force.
fn overlapping(
    down: &PartitionsDef,
    up: &PartitionsDef,
    index: u32,
    start_offset: i64,
    end_offset: i64,
    env: PartitionEnv<'_>,
) -> BTreeSet<u32> {
    let PartitionsDef::Time(d) = down else {
        unreachable!()
    };
    let PartitionsDef::Time(u) = up else {
        unreachable!()
    };
    let span_start = d.window(i64::from(index) + start_offset).0;
    let span_end = d.window(i64::from(index) + end_offset).1;
    (0..up.len(env))
        .filter(|&j| {
            let (s, e) = u.window(i64::from(j));
            s < span_end && e > span_start
        })
        .collect()
}

proptest! {
    #[test]
    fn time_keys_round_trip(i in 0u32..25_000) {
        let keys = DynamicKeys::new();
        let env = PartitionEnv { now: now(), dynamic: &keys };
        for d in [hourly(), daily(), weekly(), monthly()] {
            if i < d.len(env) {
                let key = d.key_of(i, env).unwrap();
                prop_assert_eq!(d.index_of(&key, env), Some(i), "{}", key);
            }
        }
    }

    #[test]
    fn hourly_keys_round_trip_across_dst_days(day in prop::sample::select(vec!["2024-03-10", "2024-11-03", "2025-03-09", "2025-11-02"]), hour in 0i64..30) {
        let keys = DynamicKeys::new();
        let env = PartitionEnv { now: now(), dynamic: &keys };
        let h = hourly();
        let PartitionsDef::Time(t) = &*h else { unreachable!() };
        let midnight = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap().and_hms_opt(0, 0, 0).unwrap();
        let tz: chrono_tz::Tz = "America/Chicago".parse().unwrap();
        let start = tz.from_local_datetime(&midnight).earliest().unwrap().with_timezone(&Utc) + Duration::hours(hour);
        let index = u32::try_from(t.index_containing(start)).unwrap();
        let key = h.key_of(index, env).unwrap();
        prop_assert_eq!(h.index_of(&key, env), Some(index), "{}", key);
        prop_assert_eq!(t.window(i64::from(index)).1 - t.window(i64::from(index)).0, Duration::hours(1));
    }

    #[test]
    fn static_multi_and_dynamic_keys_round_trip(i in 0u32..3_000, added in 1usize..40, removed in prop::collection::vec(0usize..40, 0..10)) {
        let mut keys = DynamicKeys::new();
        for k in 0..added {
            keys.add("p", &format!("ENC{k:05}"));
        }
        for r in &removed {
            keys.remove("p", &format!("ENC{r:05}"));
        }
        let env = PartitionEnv { now: now(), dynamic: &keys };
        let (s, d) = (sources(), daily());
        let m = multi(&s, &d);
        let dynamic = def("type = \"dynamic\"\nsensitive = true", &[]);
        for p in [&s, &m, &dynamic] {
            if i < p.len(env) {
                match p.key_of(i, env) {
                    Some(key) => prop_assert_eq!(p.index_of(&key, env), Some(i), "{}", key),
                    None => prop_assert!(!p.all(env).contains(i)),
                }
            }
        }
        prop_assert_eq!(dynamic.all(env).len(), (0..added).filter(|k| !removed.contains(k)).count() as u64);
    }

    #[test]
    fn time_window_mapping_is_exactly_window_overlap(i in 0u32..1_000, start_offset in -40i64..2, width in 0i64..3) {
        let keys = DynamicKeys::new();
        let env = PartitionEnv { now: now(), dynamic: &keys };
        let end_offset = start_offset + width;
        let spec = format!("type = \"time_window\"\nstart_offset = {start_offset}\nend_offset = {end_offset}");
        for (down, up) in [(weekly(), daily()), (monthly(), daily()), (daily(), daily()), (daily(), hourly()), (daily(), weekly()), (monthly(), weekly())] {
            if i >= down.len(env) {
                continue;
            }
            let m = mapping(Some(&spec), &down, &up);
            let got: BTreeSet<u32> = m.upstream_partitions(i..i + 1, env).iter().collect();
            prop_assert_eq!(&got, &overlapping(&down, &up, i, start_offset, end_offset, env), "{} -> {}", down.describe(), up.describe());
        }
    }

    #[test]
    fn downstream_is_the_inverse_of_upstream(j in 0u32..800, start_offset in -5i32..1, width in 0i32..2, pick in 0usize..5) {
        let keys = DynamicKeys::new();
        let env = PartitionEnv { now: now(), dynamic: &keys };
        let (s, d) = (sources(), daily());
        let m = multi(&s, &d);
        let offsets = format!("type = \"time_window\"\nstart_offset = {start_offset}\nend_offset = {}", start_offset + width);
        let cases: Vec<(Arc<PartitionsDef>, Arc<PartitionsDef>, Option<String>)> = vec![
            (weekly(), daily(), None),
            (monthly(), daily(), Some(offsets.clone())),
            (daily(), daily(), Some(offsets)),
            (m.clone(), d.clone(), Some("type = \"multi_to_single\"\ndimension = \"date\"".into())),
            (d.clone(), m.clone(), Some("type = \"multi_to_single\"\ndimension = \"date\"".into())),
        ];
        let (down, up, spec) = &cases[pick];
        let map = mapping(spec.as_deref(), down, up);
        if j < up.len(env) {
            let downs: BTreeSet<u32> = map.downstream_partitions(j..j + 1, env).iter().collect();
            // Brute force over the downstream partitions near j (the relation is local).
            let expected: BTreeSet<u32> = (0..down.len(env))
                .filter(|&i| map.upstream_partitions(i..i + 1, env).contains(j))
                .collect();
            prop_assert_eq!(downs, expected);
        }
    }

    #[test]
    fn partition_set_matches_a_btreeset(ops in prop::collection::vec((0u8..4, 0u32..200, 0u32..20), 0..60)) {
        let mut set = PartitionSet::new();
        let mut model = BTreeSet::new();
        let mut other = PartitionSet::new();
        let mut other_model = BTreeSet::new();
        for (op, start, len) in ops {
            let range = start..start + len;
            match op {
                0 => { set.insert_range(range.clone()); model.extend(range); }
                1 => { set.remove_range(range.clone()); for i in range { model.remove(&i); } }
                2 => { other.insert_range(range.clone()); other_model.extend(range); }
                _ => { set.insert(start); model.insert(start); }
            }
            prop_assert_eq!(set.iter().collect::<BTreeSet<_>>(), model.clone());
            prop_assert_eq!(set.len(), model.len() as u64);
            prop_assert!(set.ranges().windows(2).all(|w| w[0].end < w[1].start), "ranges must be disjoint and not touching");
        }
        prop_assert_eq!(set.union(&other).iter().collect::<BTreeSet<_>>(), model.union(&other_model).copied().collect());
        prop_assert_eq!(set.intersection(&other).iter().collect::<BTreeSet<_>>(), model.intersection(&other_model).copied().collect());
        prop_assert_eq!(set.difference(&other).iter().collect::<BTreeSet<_>>(), model.difference(&other_model).copied().collect());
        for i in 0..230 {
            prop_assert_eq!(set.contains(i), model.contains(&i));
        }
    }
}

#[test]
fn daily_to_weekly_and_monthly_read_exactly_their_days() {
    let keys = DynamicKeys::new();
    let env = PartitionEnv {
        now: now(),
        dynamic: &keys,
    };
    let (d, w, mo) = (daily(), weekly(), monthly());
    let week = w.index_of("2024-03-04", env).unwrap();
    let days = mapping(None, &w, &d).upstream_partitions(week..week + 1, env);
    let first = d.index_of("2024-03-04", env).unwrap();
    assert_eq!(days, PartitionSet::from_range(first..first + 7));
    let feb = mo.index_of("2024-02-01", env).unwrap();
    let days = mapping(None, &mo, &d).upstream_partitions(feb..feb + 1, env);
    let first = d.index_of("2024-02-01", env).unwrap();
    assert_eq!(
        days,
        PartitionSet::from_range(first..first + 29),
        "2024 is a leap year"
    );
    // Yesterday's: one day back.
    let today = d.index_of("2024-03-10", env).unwrap();
    let yesterday = mapping(
        Some("type = \"time_window\"\nstart_offset = -1\nend_offset = -1"),
        &d,
        &d,
    )
    .upstream_partitions(today..today + 1, env);
    assert_eq!(yesterday, PartitionSet::single(today - 1));
}

#[test]
fn multi_to_single_maps_one_dimension_both_ways() {
    let keys = DynamicKeys::new();
    let env = PartitionEnv {
        now: now(),
        dynamic: &keys,
    };
    let (s, d) = (sources(), daily());
    let m = multi(&s, &d);
    let by_date = mapping(
        Some("type = \"multi_to_single\"\ndimension = \"date\""),
        &m,
        &d,
    );
    let key = m.index_of("reference_lab|2024-05-02", env).unwrap();
    let ups = by_date.upstream_partitions(key..key + 1, env);
    assert_eq!(
        ups,
        PartitionSet::single(d.index_of("2024-05-02", env).unwrap())
    );
    // A daily roll-up reading the multi asset reads every source of its day.
    let rollup = mapping(
        Some("type = \"multi_to_single\"\ndimension = \"date\""),
        &d,
        &m,
    );
    let day = d.index_of("2024-05-02", env).unwrap();
    let read: Vec<String> = rollup
        .upstream_partitions(day..day + 1, env)
        .iter()
        .map(|i| m.key_of(i, env).unwrap())
        .collect();
    assert_eq!(
        read,
        [
            "main_lab|2024-05-02",
            "reference_lab|2024-05-02",
            "point_of_care|2024-05-02"
        ]
    );
    // By source: the static dimension.
    let by_source = mapping(None, &m, &s);
    let ups = by_source.upstream_partitions(key..key + 1, env);
    assert_eq!(ups, PartitionSet::single(1));
}

#[test]
fn definitions_no_mapping_can_connect_are_refused() {
    let (s, d) = (sources(), daily());
    assert!(
        PartitionMapping::resolve(None, Some(&s), Some(&d))
            .unwrap_err()
            .contains("no default mapping")
    );
    let bad_static: MappingSpec =
        toml::from_str("type = \"static\"\nmap = { main_lab = [\"nope\"] }").unwrap();
    assert!(
        PartitionMapping::resolve(Some(&bad_static), Some(&s), Some(&s))
            .unwrap_err()
            .contains("\"nope\"")
    );
    let bad_dim: MappingSpec =
        toml::from_str("type = \"multi_to_single\"\ndimension = \"day\"").unwrap();
    let m = multi(&s, &d);
    assert!(
        PartitionMapping::resolve(Some(&bad_dim), Some(&m), Some(&d))
            .unwrap_err()
            .contains("no dimension \"day\"")
    );
    let reversed: MappingSpec =
        toml::from_str("type = \"time_window\"\nstart_offset = 0\nend_offset = -1").unwrap();
    assert!(PartitionMapping::resolve(Some(&reversed), Some(&d), Some(&d)).is_err());
}

proptest! {
    /// The allocation-free fast path agrees with the general one wherever it answers.
    #[test]
    fn upstream_range_agrees_with_upstream_partitions(i in 0u32..1_200, start_offset in -40i32..2, width in 0i32..3, pick in 0usize..11) {
        let keys = DynamicKeys::new();
        let env = PartitionEnv { now: now(), dynamic: &keys };
        let spec = format!("type = \"time_window\"\nstart_offset = {start_offset}\nend_offset = {}", start_offset + width);
        let later_daily = def("type = \"daily\"\nstart = \"2024-02-01\"\ntimezone = \"America/Chicago\"", &[]);
        // Same granularity, other windows: another zone, another first day of the week.
        let utc_daily = def("type = \"daily\"\nstart = \"2024-01-01\"\ntimezone = \"UTC\"", &[]);
        let sunday_weekly = def("type = \"weekly\"\nstart = \"2023-12-31\"\ntimezone = \"America/Chicago\"\nweek_starts_on = \"sunday\"", &[]);
        let cases: Vec<(Arc<PartitionsDef>, Arc<PartitionsDef>, Option<&str>)> = vec![
            (daily(), daily(), Some(&spec)),
            (daily(), later_daily.clone(), Some(&spec)),
            (later_daily, daily(), None),
            (weekly(), daily(), None),
            (daily(), hourly(), Some(&spec)),
            (daily(), daily(), Some("type = \"all\"")),
            (daily(), utc_daily.clone(), Some(&spec)),
            (utc_daily, daily(), Some(&spec)),
            (weekly(), sunday_weekly, Some(&spec)),
            (daily(), daily(), None),
            (daily(), daily(), Some("type = \"last\"")),
        ];
        let (down, up, spec) = &cases[pick];
        let map = mapping(*spec, down, up);
        if i < down.len(env) {
            let fast = map.upstream_range(i, up.len(env)).expect("contiguous kinds answer");
            prop_assert_eq!(PartitionSet::from_range(fast), map.upstream_partitions(i..i + 1, env), "{} -> {}", down.describe(), up.describe());
        }
    }
}

/// Identity reads the same partition, and nothing past the upstream's end.
#[test]
fn identity_reads_the_same_partition_and_nothing_past_the_end() {
    let keys = DynamicKeys::new();
    let env = PartitionEnv {
        now: now(),
        dynamic: &keys,
    };
    let d = daily();
    let len = d.len(env);
    let map = mapping(None, &d, &d);
    assert_eq!(map.upstream_range(3, len), Some(3..4));
    assert_eq!(map.upstream_range(len - 1, len), Some(len - 1..len));
    assert_eq!(map.upstream_range(len, len), Some(0..0));
    assert_eq!(map.upstream_range(len + 5, len), Some(0..0));
}

/// Under `last`, only a change to the newest upstream partition concerns the downstream.
#[test]
fn last_mapping_downstream_is_everything_for_the_newest_only() {
    let keys = DynamicKeys::new();
    let env = PartitionEnv {
        now: now(),
        dynamic: &keys,
    };
    let (w, d) = (weekly(), daily());
    let map = mapping(Some("type = \"last\""), &w, &d);
    let newest = d.len(env) - 1;
    assert_eq!(
        map.downstream_partitions(newest..newest + 1, env),
        PartitionSet::from_range(0..w.len(env))
    );
    assert_eq!(
        map.downstream_partitions(newest - 3..newest, env),
        PartitionSet::new()
    );
    assert_eq!(
        map.downstream_partitions(0..newest + 1, env),
        PartitionSet::from_range(0..w.len(env))
    );
}

#[test]
fn only_the_all_mapping_reads_all() {
    let (d, w) = (daily(), weekly());
    assert!(mapping(Some("type = \"all\""), &w, &d).reads_all());
    assert!(!mapping(Some("type = \"last\""), &w, &d).reads_all());
    assert!(!mapping(None, &d, &d).reads_all());
    assert!(!mapping(None, &w, &d).reads_all());
}
