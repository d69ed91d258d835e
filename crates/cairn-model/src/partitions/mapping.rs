//! Partition mappings: which upstream partitions a downstream partition reads, and back.
//!
//! An unpartitioned side behaves as a definition with exactly one partition, index 0.
//! Both directions work on index ranges in O(1) or O(ranges) for time windows (by window
//! arithmetic, never by enumerating windows), so fan-in is unlimited.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use chrono::Duration;

use super::{
    MappingKind, MappingSpec, PartitionEnv, PartitionSet, PartitionsDef, StaticPartitions,
    TimeWindows,
};

/// A validated mapping between a downstream and an upstream definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMapping {
    down: Option<Arc<PartitionsDef>>,
    up: Option<Arc<PartitionsDef>>,
    kind: Kind,
    /// For time windows of the same granularity and zone: upstream index minus downstream
    /// index of the same window, so mapping needs no calendar arithmetic.
    aligned_delta: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Identity,
    /// Both sides are time windows: the windows overlapping downstream windows
    /// `i + start_offset ..= i + end_offset`.
    TimeWindow {
        start_offset: i32,
        end_offset: i32,
    },
    All,
    Last,
    /// Indexed by downstream (resp. upstream) static index.
    Static {
        down_to_up: Vec<PartitionSet>,
        up_to_down: Vec<PartitionSet>,
    },
    /// One side is multi; `inner` maps between the named dimension's definition and the
    /// other side (downstream first, as always).
    MultiToSingle {
        dimension: String,
        time: bool,
        multi_is_downstream: bool,
        inner: Box<PartitionMapping>,
    },
}

impl PartitionMapping {
    /// Validates `spec` (or picks the default) between two definitions; `None` is an
    /// unpartitioned asset. The error says why no mapping connects them.
    pub fn resolve(
        spec: Option<&MappingSpec>,
        down: Option<&Arc<PartitionsDef>>,
        up: Option<&Arc<PartitionsDef>>,
    ) -> Result<Self, String> {
        let kind = match spec {
            None => default_kind(down.map(|d| &**d), up.map(|u| &**u))?,
            Some(spec) => explicit_kind(spec, down.map(|d| &**d), up.map(|u| &**u))?,
        };
        let aligned_delta = match (down.map(|d| &**d), up.map(|u| &**u), &kind) {
            (
                Some(PartitionsDef::Time(d)),
                Some(PartitionsDef::Time(u)),
                Kind::TimeWindow { .. },
            ) if d.granularity == u.granularity
                && d.timezone == u.timezone
                && d.week_starts_on == u.week_starts_on =>
            {
                Some(u.index_containing(d.window_start(0)))
            }
            _ => None,
        };
        Ok(Self {
            down: down.cloned(),
            up: up.cloned(),
            kind,
            aligned_delta,
        })
    }

    /// Whether this mapping reads every upstream partition (so a change anywhere upstream
    /// concerns every downstream partition).
    pub fn reads_all(&self) -> bool {
        matches!(self.kind, Kind::All)
    }

    /// The upstream partitions that downstream partitions `down` read, among those
    /// that exist in `env`.
    pub fn upstream_partitions(&self, down: Range<u32>, env: PartitionEnv<'_>) -> PartitionSet {
        if down.is_empty() {
            return PartitionSet::new();
        }
        let up_all = || all_of(self.up.as_deref(), env);
        match &self.kind {
            Kind::Identity => PartitionSet::from_range(down).intersection(&up_all()),
            Kind::All => up_all(),
            Kind::Last => up_all()
                .last()
                .map_or_else(PartitionSet::new, PartitionSet::single),
            Kind::TimeWindow {
                start_offset,
                end_offset,
            } => {
                let (d, u) = (self.down_time(), self.up_time());
                let span_start = d.window_start(i64::from(down.start) + i64::from(*start_offset));
                let span_end = d.window_start(i64::from(down.end) + i64::from(*end_offset));
                let first = u.index_containing(span_start);
                let last = u.index_containing(span_end - Duration::nanoseconds(1));
                clipped(first, last + 1, u.len_at(env.now))
            }
            Kind::Static { down_to_up, .. } => {
                let mut out = PartitionSet::new();
                for i in down.clone() {
                    if let Some(ups) = down_to_up.get(i as usize) {
                        out = out.union(ups);
                    }
                }
                out
            }
            Kind::MultiToSingle {
                time,
                multi_is_downstream: true,
                inner,
                ..
            } => {
                let multi = self.multi(true);
                let dims = dimension_indices(multi, *time, down, env);
                set_map(&dims, |r| inner.upstream_partitions(r, env))
            }
            Kind::MultiToSingle {
                time,
                multi_is_downstream: false,
                inner,
                ..
            } => {
                let multi = self.multi(false);
                let dims = inner.upstream_partitions(down, env);
                expand_dimension(multi, *time, &dims, env)
            }
        }
    }

    /// The downstream partitions that read any of upstream partitions `up` (the exact
    /// inverse of [`Self::upstream_partitions`]), among those that exist in `env`.
    pub fn downstream_partitions(&self, up: Range<u32>, env: PartitionEnv<'_>) -> PartitionSet {
        if up.is_empty() {
            return PartitionSet::new();
        }
        let down_all = || all_of(self.down.as_deref(), env);
        let up_live =
            PartitionSet::from_range(up.clone()).intersection(&all_of(self.up.as_deref(), env));
        if up_live.is_empty() {
            return PartitionSet::new();
        }
        match &self.kind {
            Kind::Identity => up_live.intersection(&down_all()),
            Kind::All => down_all(),
            Kind::Last => match all_of(self.up.as_deref(), env).last() {
                Some(last) if up_live.contains(last) => down_all(),
                _ => PartitionSet::new(),
            },
            Kind::TimeWindow {
                start_offset,
                end_offset,
            } => {
                let (d, u) = (self.down_time(), self.up_time());
                let mut out = PartitionSet::new();
                for r in up_live.ranges() {
                    let span_start = u.window_start(i64::from(r.start));
                    let span_end = u.window_start(i64::from(r.end));
                    let first = d.index_containing(span_start) - i64::from(*end_offset);
                    let last = d.index_containing(span_end - Duration::nanoseconds(1))
                        - i64::from(*start_offset);
                    out = out.union(&clipped(first, last + 1, d.len_at(env.now)));
                }
                out
            }
            Kind::Static { up_to_down, .. } => {
                let mut out = PartitionSet::new();
                for i in up_live.iter() {
                    if let Some(downs) = up_to_down.get(i as usize) {
                        out = out.union(downs);
                    }
                }
                out
            }
            Kind::MultiToSingle {
                time,
                multi_is_downstream: true,
                inner,
                ..
            } => {
                let multi = self.multi(true);
                let dims = set_map(&up_live, |r| inner.downstream_partitions(r, env));
                expand_dimension(multi, *time, &dims, env)
            }
            Kind::MultiToSingle {
                time,
                multi_is_downstream: false,
                inner,
                ..
            } => {
                let multi = self.multi(false);
                let dims = set_map(&up_live, |r| dimension_indices(multi, *time, r, env));
                set_map(&dims, |r| inner.downstream_partitions(r, env))
            }
        }
    }

    /// The upstream partitions of downstream partition `down` when they form one range
    /// (identity, time windows, all, last, unpartitioned sides), computed without
    /// allocating; `None` for the other kinds (use [`Self::upstream_partitions`]).
    /// `up_len` is the upstream definition's current length. Dynamic upstreams are not
    /// contiguous (removed keys), so they answer `None` too.
    pub fn upstream_range(&self, down: u32, up_len: u32) -> Option<Range<u32>> {
        if matches!(self.up.as_deref(), Some(PartitionsDef::Dynamic(_))) {
            return None;
        }
        match &self.kind {
            Kind::Identity => Some(if down < up_len { down..down + 1 } else { 0..0 }),
            Kind::All => Some(0..up_len),
            Kind::Last => Some(up_len.saturating_sub(1)..up_len),
            Kind::TimeWindow {
                start_offset,
                end_offset,
            } => {
                let (d, u) = (self.down_time(), self.up_time());
                let (first, end) = match self.aligned_delta {
                    // Same windows: pure index arithmetic.
                    Some(delta) => {
                        let p = i64::from(down) + delta;
                        (p + i64::from(*start_offset), p + i64::from(*end_offset) + 1)
                    }
                    None => {
                        let span_start = d.window_start(i64::from(down) + i64::from(*start_offset));
                        let span_end = d.window_start(i64::from(down) + i64::from(*end_offset) + 1);
                        (
                            u.index_containing(span_start),
                            u.index_containing(span_end - Duration::nanoseconds(1)) + 1,
                        )
                    }
                };
                let lo = first.clamp(0, i64::from(up_len)) as u32;
                let hi = end.clamp(0, i64::from(up_len)) as u32;
                Some(lo..hi.max(lo))
            }
            Kind::Static { .. } | Kind::MultiToSingle { .. } => None,
        }
    }

    /// Upstream partitions of a whole set of downstream partitions.
    pub fn upstream_of_set(&self, down: &PartitionSet, env: PartitionEnv<'_>) -> PartitionSet {
        set_map(down, |r| self.upstream_partitions(r, env))
    }

    /// Downstream partitions of a whole set of upstream partitions.
    pub fn downstream_of_set(&self, up: &PartitionSet, env: PartitionEnv<'_>) -> PartitionSet {
        set_map(up, |r| self.downstream_partitions(r, env))
    }

    fn down_time(&self) -> &TimeWindows {
        time_of(self.down.as_deref())
    }

    fn up_time(&self) -> &TimeWindows {
        time_of(self.up.as_deref())
    }

    fn multi(&self, downstream: bool) -> &super::MultiPartitions {
        let side = if downstream { &self.down } else { &self.up };
        match side.as_deref() {
            Some(PartitionsDef::Multi(m)) => m,
            _ => unreachable!("validated: the multi side is multi"),
        }
    }
}

impl fmt::Display for PartitionMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Identity => f.write_str("identity"),
            Kind::TimeWindow {
                start_offset: 0,
                end_offset: 0,
            } => f.write_str("time_window"),
            Kind::TimeWindow {
                start_offset,
                end_offset,
            } => write!(f, "time_window[{start_offset}, {end_offset}]"),
            Kind::All => f.write_str("all"),
            Kind::Last => f.write_str("last"),
            Kind::Static { .. } => f.write_str("static"),
            Kind::MultiToSingle { dimension, .. } => write!(f, "multi_to_single({dimension})"),
        }
    }
}

fn time_of(def: Option<&PartitionsDef>) -> &TimeWindows {
    match def {
        Some(PartitionsDef::Time(t)) => t,
        _ => unreachable!("validated: time_window mappings join time definitions"),
    }
}

fn all_of(def: Option<&PartitionsDef>, env: PartitionEnv<'_>) -> PartitionSet {
    def.map_or_else(|| PartitionSet::single(0), |d| d.all(env))
}

/// `[first, end)` of possibly negative indices, clipped to `[0, len)`.
fn clipped(first: i64, end: i64, len: u32) -> PartitionSet {
    let lo = first.clamp(0, i64::from(len)) as u32;
    let hi = end.clamp(0, i64::from(len)) as u32;
    PartitionSet::from_range(lo..hi)
}

fn set_map(set: &PartitionSet, f: impl Fn(Range<u32>) -> PartitionSet) -> PartitionSet {
    let mut out = PartitionSet::new();
    for r in set.ranges() {
        out = out.union(&f(r.clone()));
    }
    out
}

/// The indices in one dimension of a range of multi indices.
fn dimension_indices(
    multi: &super::MultiPartitions,
    time: bool,
    range: Range<u32>,
    _env: PartitionEnv<'_>,
) -> PartitionSet {
    let n = multi.static_dim.len();
    if time {
        PartitionSet::from_range(range.start / n..(range.end - 1) / n + 1)
    } else if range.end - range.start >= n {
        PartitionSet::from_range(0..n)
    } else {
        range.map(|i| i % n).collect()
    }
}

/// Every multi index whose dimension index is in `dims`.
fn expand_dimension(
    multi: &super::MultiPartitions,
    time: bool,
    dims: &PartitionSet,
    env: PartitionEnv<'_>,
) -> PartitionSet {
    let n = multi.static_dim.len();
    let len = multi.time_dim.len_at(env.now).saturating_mul(n);
    if time {
        let ranges = dims
            .ranges()
            .iter()
            .map(|r| r.start.saturating_mul(n)..r.end.saturating_mul(n));
        return PartitionSet::from_ranges(ranges).clip(len);
    }
    let time_len = multi.time_dim.len_at(env.now);
    let statics = dims.clip(n);
    if statics.len() == u64::from(n) {
        return PartitionSet::from_range(0..len);
    }
    PartitionSet::from_ranges((0..time_len).flat_map(|t| {
        statics
            .ranges()
            .iter()
            .map(move |r| t * n + r.start..t * n + r.end)
    }))
}

fn describe(def: Option<&PartitionsDef>) -> String {
    match def {
        None => "unpartitioned".into(),
        Some(d) => format!("{} partitions", d.kind().as_str()),
    }
}

fn default_kind(down: Option<&PartitionsDef>, up: Option<&PartitionsDef>) -> Result<Kind, String> {
    match (down, up) {
        (None, None) => Ok(Kind::Identity),
        (None, Some(_)) | (Some(_), None) => Ok(Kind::All),
        (Some(d), Some(u)) if d == u => Ok(Kind::Identity),
        (Some(PartitionsDef::Time(_)), Some(PartitionsDef::Time(_))) => Ok(Kind::TimeWindow {
            start_offset: 0,
            end_offset: 0,
        }),
        (Some(PartitionsDef::Multi(m)), Some(other)) => multi_default(m, other, true),
        (Some(other), Some(PartitionsDef::Multi(m))) => multi_default(m, other, false),
        (Some(d), Some(u)) => Err(format!(
            "no default mapping connects {} to {}; declare one, e.g. mapping = {{ type = \"all\" }}",
            describe(Some(d)),
            describe(Some(u))
        )),
    }
}

/// A multi definition and a single one: match the single one to a dimension.
fn multi_default(
    m: &super::MultiPartitions,
    other: &PartitionsDef,
    multi_is_downstream: bool,
) -> Result<Kind, String> {
    let (dimension, time) = match other {
        PartitionsDef::Static(s) if *s == m.static_dim => (m.static_name.clone(), false),
        PartitionsDef::Time(_) => (m.time_name.clone(), true),
        _ => {
            return Err(format!(
                "no dimension of the multi definition ({} x {}) matches {}; declare a mapping",
                m.static_name,
                m.time_name,
                describe(Some(other))
            ));
        }
    };
    multi_kind(m, other, &dimension, time, multi_is_downstream)
}

fn multi_kind(
    m: &super::MultiPartitions,
    other: &PartitionsDef,
    dimension: &str,
    time: bool,
    multi_is_downstream: bool,
) -> Result<Kind, String> {
    let dim_def = Arc::new(if time {
        PartitionsDef::Time(m.time_dim.clone())
    } else {
        PartitionsDef::Static(m.static_dim.clone())
    });
    let other = Arc::new(other.clone());
    let inner = if multi_is_downstream {
        PartitionMapping::resolve(None, Some(&dim_def), Some(&other))
    } else {
        PartitionMapping::resolve(None, Some(&other), Some(&dim_def))
    }
    .map_err(|e| format!("dimension {dimension:?}: {e}"))?;
    Ok(Kind::MultiToSingle {
        dimension: dimension.to_owned(),
        time,
        multi_is_downstream,
        inner: Box::new(inner),
    })
}

fn explicit_kind(
    spec: &MappingSpec,
    down: Option<&PartitionsDef>,
    up: Option<&PartitionsDef>,
) -> Result<Kind, String> {
    let allowed: &[&str] = match spec.kind {
        MappingKind::TimeWindow => &["start_offset", "end_offset"],
        MappingKind::Static => &["map"],
        MappingKind::MultiToSingle => &["dimension"],
        _ => &[],
    };
    for (field, present) in [
        ("start_offset", spec.start_offset.is_some()),
        ("end_offset", spec.end_offset.is_some()),
        ("map", spec.map.is_some()),
        ("dimension", spec.dimension.is_some()),
    ] {
        if present && !allowed.contains(&field) {
            return Err(
                format!("`{field}` does not apply to a {:?} mapping", spec.kind).to_lowercase(),
            );
        }
    }
    match spec.kind {
        MappingKind::All => Ok(Kind::All),
        MappingKind::Last => Ok(Kind::Last),
        MappingKind::Identity => match (down, up) {
            (None, None) => Ok(Kind::Identity),
            (Some(d), Some(u)) if d == u => Ok(Kind::Identity),
            // Same windows with a different first window: the same keys, found by overlap.
            (Some(PartitionsDef::Time(d)), Some(PartitionsDef::Time(u)))
                if d.granularity == u.granularity
                    && d.timezone == u.timezone
                    && d.format == u.format =>
            {
                Ok(Kind::TimeWindow {
                    start_offset: 0,
                    end_offset: 0,
                })
            }
            _ => Err(format!(
                "identity needs equal definitions, not {} and {}",
                describe(down),
                describe(up)
            )),
        },
        MappingKind::TimeWindow => {
            let (s, e) = (spec.start_offset.unwrap_or(0), spec.end_offset.unwrap_or(0));
            if s > e {
                return Err(format!(
                    "start_offset ({s}) must not be after end_offset ({e})"
                ));
            }
            match (down, up) {
                (Some(PartitionsDef::Time(_)), Some(PartitionsDef::Time(_))) => {
                    Ok(Kind::TimeWindow {
                        start_offset: s,
                        end_offset: e,
                    })
                }
                _ => Err(format!(
                    "time_window joins two time-window definitions, not {} and {}",
                    describe(down),
                    describe(up)
                )),
            }
        }
        MappingKind::Static => match (down, up) {
            (Some(PartitionsDef::Static(d)), Some(PartitionsDef::Static(u))) => static_kind(
                spec.map.as_ref().ok_or("a static mapping needs `map`")?,
                d,
                u,
            ),
            _ => Err(format!(
                "a static mapping joins two static definitions, not {} and {}",
                describe(down),
                describe(up)
            )),
        },
        MappingKind::MultiToSingle => {
            let dimension = spec
                .dimension
                .as_deref()
                .ok_or("multi_to_single needs `dimension`")?;
            let (m, other, multi_is_downstream) = match (down, up) {
                (Some(PartitionsDef::Multi(m)), Some(other))
                    if !matches!(other, PartitionsDef::Multi(_)) =>
                {
                    (m, other, true)
                }
                (Some(other), Some(PartitionsDef::Multi(m)))
                    if !matches!(other, PartitionsDef::Multi(_)) =>
                {
                    (m, other, false)
                }
                _ => {
                    return Err(format!(
                        "multi_to_single joins a multi and a single definition, not {} and {}",
                        describe(down),
                        describe(up)
                    ));
                }
            };
            let time = if dimension == m.time_name {
                true
            } else if dimension == m.static_name {
                false
            } else {
                return Err(format!(
                    "the multi definition has no dimension {dimension:?} (it has {:?} and {:?})",
                    m.static_name, m.time_name
                ));
            };
            multi_kind(m, other, dimension, time, multi_is_downstream)
        }
    }
}

fn static_kind(
    map: &std::collections::BTreeMap<String, Vec<String>>,
    down: &StaticPartitions,
    up: &StaticPartitions,
) -> Result<Kind, String> {
    let mut down_to_up = vec![PartitionSet::new(); down.len() as usize];
    let mut up_to_down = vec![PartitionSet::new(); up.len() as usize];
    for (d, ups) in map {
        let di = down.index_of(d).ok_or_else(|| {
            format!(
                "map names downstream key {d:?}, which is not a key of the downstream definition"
            )
        })?;
        for u in ups {
            let ui = up.index_of(u).ok_or_else(|| {
                format!(
                    "map names upstream key {u:?}, which is not a key of the upstream definition"
                )
            })?;
            down_to_up[di as usize].insert(ui);
            up_to_down[ui as usize].insert(di);
        }
    }
    Ok(Kind::Static {
        down_to_up,
        up_to_down,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::partitions::{DynamicKeys, PartitionsSpec};

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

    fn daily() -> Arc<PartitionsDef> {
        def(
            "type = \"daily\"\nstart = \"2024-01-01\"\ntimezone = \"America/Chicago\"",
            &[],
        )
    }

    fn weekly() -> Arc<PartitionsDef> {
        def(
            "type = \"weekly\"\nstart = \"2024-01-01\"\ntimezone = \"America/Chicago\"",
            &[],
        )
    }

    fn sources() -> Arc<PartitionsDef> {
        def(
            "type = \"static\"\nkeys = [\"main_lab\", \"reference_lab\", \"point_of_care\"]",
            &[],
        )
    }

    /// Three sources x ten days (2024-01-01 ..= 2024-01-10 at [`now`]): key `t * 3 + s`.
    fn multi() -> Arc<PartitionsDef> {
        def(
            "type = \"multi\"\ndimensions = [{ name = \"source\", partitions = \"sources\" }, { name = \"date\", partitions = \"daily\" }]",
            &[("sources", &sources()), ("daily", &daily())],
        )
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 11, 12, 0, 0).unwrap()
    }

    fn resolve(
        spec: Option<&str>,
        down: Option<&Arc<PartitionsDef>>,
        up: Option<&Arc<PartitionsDef>>,
    ) -> Result<PartitionMapping, String> {
        let spec: Option<MappingSpec> = spec.map(|t| toml::from_str(t).unwrap());
        PartitionMapping::resolve(spec.as_ref(), down, up)
    }

    fn set(indices: impl IntoIterator<Item = u32>) -> PartitionSet {
        indices.into_iter().collect()
    }

    #[test]
    fn display_names_each_mapping_kind() {
        let (d, w, s, m) = (daily(), weekly(), sources(), multi());
        let shown = |spec: Option<&str>, down: &Arc<PartitionsDef>, up: &Arc<PartitionsDef>| {
            resolve(spec, Some(down), Some(up)).unwrap().to_string()
        };
        assert_eq!(shown(None, &d, &d), "identity");
        assert_eq!(shown(None, &w, &d), "time_window");
        assert_eq!(
            shown(
                Some("type = \"time_window\"\nstart_offset = -2\nend_offset = 0"),
                &d,
                &d
            ),
            "time_window[-2, 0]"
        );
        assert_eq!(shown(Some("type = \"all\""), &w, &d), "all");
        assert_eq!(shown(Some("type = \"last\""), &w, &d), "last");
        assert_eq!(
            shown(
                Some("type = \"static\"\nmap = { main_lab = [\"main_lab\"] }"),
                &s,
                &s
            ),
            "static"
        );
        assert_eq!(shown(None, &m, &d), "multi_to_single(date)");
        assert_eq!(shown(None, &m, &s), "multi_to_single(source)");
    }

    #[test]
    fn default_mapping_is_identity_between_equal_static_definitions_only() {
        let keys = DynamicKeys::new();
        let env = PartitionEnv {
            now: now(),
            dynamic: &keys,
        };
        let s = sources();
        let same = resolve(None, Some(&s), Some(&s)).unwrap();
        assert_eq!(same.to_string(), "identity");
        assert_eq!(same.upstream_partitions(1..2, env), PartitionSet::single(1));
        let other = def("type = \"static\"\nkeys = [\"a\", \"b\"]", &[]);
        assert_eq!(
            resolve(None, Some(&s), Some(&other)).unwrap_err(),
            "no default mapping connects static partitions to static partitions; declare one, e.g. mapping = { type = \"all\" }"
        );
        // An unpartitioned side reads, or is read by, everything.
        let d = daily();
        assert_eq!(resolve(None, None, Some(&d)).unwrap().to_string(), "all");
        assert_eq!(resolve(None, Some(&d), None).unwrap().to_string(), "all");
        assert_eq!(resolve(None, None, None).unwrap().to_string(), "identity");
    }

    #[test]
    fn default_multi_mapping_needs_a_dimension_equal_to_the_other_side() {
        let other = def("type = \"static\"\nkeys = [\"a\", \"b\"]", &[]);
        let m = multi();
        let expected = "no dimension of the multi definition (source x date) matches static partitions; declare a mapping";
        assert_eq!(resolve(None, Some(&m), Some(&other)).unwrap_err(), expected);
        assert_eq!(resolve(None, Some(&other), Some(&m)).unwrap_err(), expected);
    }

    #[test]
    fn a_multi_partition_reads_the_one_partition_of_its_dimension_value() {
        let keys = DynamicKeys::new();
        let env = PartitionEnv {
            now: now(),
            dynamic: &keys,
        };
        let (m, d, s) = (multi(), daily(), sources());
        assert_eq!(m.len(env), 30);
        let by_date = resolve(None, Some(&m), Some(&d)).unwrap();
        let by_source = resolve(
            Some("type = \"multi_to_single\"\ndimension = \"source\""),
            Some(&m),
            Some(&s),
        )
        .unwrap();
        for k in 0..30 {
            assert_eq!(
                by_date.upstream_partitions(k..k + 1, env),
                PartitionSet::single(k / 3),
                "{k}"
            );
            assert_eq!(
                by_source.upstream_partitions(k..k + 1, env),
                PartitionSet::single(k % 3),
                "{k}"
            );
        }
        // Ranges of keys: every date and every source they touch, and no more.
        assert_eq!(by_date.upstream_partitions(3..6, env), set([1]));
        assert_eq!(by_date.upstream_partitions(4..9, env), set([1, 2]));
        assert_eq!(by_source.upstream_partitions(4..6, env), set([1, 2]));
        assert_eq!(by_source.upstream_partitions(2..5, env), set([0, 1, 2]));
        assert_eq!(by_source.upstream_partitions(6..8, env), set([0, 1]));
    }

    #[test]
    fn a_single_partition_read_by_dimension_concerns_every_multi_key_with_its_value() {
        let keys = DynamicKeys::new();
        let env = PartitionEnv {
            now: now(),
            dynamic: &keys,
        };
        let (m, d, s) = (multi(), daily(), sources());
        let by_source = "type = \"multi_to_single\"\ndimension = \"source\"";
        // A per-source roll-up reading the multi asset reads its source on every day.
        let rollup = resolve(Some(by_source), Some(&s), Some(&m)).unwrap();
        assert_eq!(
            rollup.upstream_partitions(1..2, env),
            set((0..10).map(|t| t * 3 + 1))
        );
        assert_eq!(
            rollup.upstream_partitions(1..3, env),
            set((0..10).flat_map(|t| [t * 3 + 1, t * 3 + 2]))
        );
        assert_eq!(
            rollup.upstream_partitions(0..3, env),
            PartitionSet::from_range(0..30)
        );
        // Back: multi keys 4 and 5 are sources 1 and 2.
        assert_eq!(rollup.downstream_partitions(4..6, env), set([1, 2]));
        // The multi asset reading the static one: a change to a source concerns that
        // source on every day.
        let by_source_down = resolve(None, Some(&m), Some(&s)).unwrap();
        assert_eq!(
            by_source_down.downstream_partitions(2..3, env),
            set((0..10).map(|t| t * 3 + 2))
        );
        // By date: a day concerns its three keys.
        let by_date_down = resolve(None, Some(&m), Some(&d)).unwrap();
        assert_eq!(
            by_date_down.downstream_partitions(4..6, env),
            PartitionSet::from_range(12..18)
        );
        let daily_rollup = resolve(None, Some(&d), Some(&m)).unwrap();
        assert_eq!(daily_rollup.downstream_partitions(5..7, env), set([1, 2]));
    }

    #[test]
    fn explicit_identity_joins_equal_definitions_or_the_same_windows_only() {
        let keys = DynamicKeys::new();
        let env = PartitionEnv {
            now: now(),
            dynamic: &keys,
        };
        let identity = Some("type = \"identity\"");
        assert_eq!(
            resolve(identity, None, None).unwrap().to_string(),
            "identity"
        );
        let s = sources();
        assert_eq!(
            resolve(identity, Some(&s), Some(&s))
                .unwrap()
                .upstream_partitions(2..3, env),
            PartitionSet::single(2)
        );
        // The same days from a later first day: matched by key, not by index.
        let d = daily();
        let later = def(
            "type = \"daily\"\nstart = \"2024-01-03\"\ntimezone = \"America/Chicago\"",
            &[],
        );
        let m = resolve(identity, Some(&d), Some(&later)).unwrap();
        let day = d.index_of("2024-01-05", env).unwrap();
        assert_eq!(
            m.upstream_partitions(day..day + 1, env),
            PartitionSet::single(later.index_of("2024-01-05", env).unwrap())
        );
        let refused = |up: &Arc<PartitionsDef>| resolve(identity, Some(&d), Some(up)).unwrap_err();
        assert_eq!(
            refused(&weekly()),
            "identity needs equal definitions, not daily partitions and weekly partitions"
        );
        let utc = def(
            "type = \"daily\"\nstart = \"2024-01-01\"\ntimezone = \"UTC\"",
            &[],
        );
        assert!(refused(&utc).starts_with("identity needs equal definitions"));
        let other_format = def(
            "type = \"daily\"\nstart = \"2024-01-01\"\ntimezone = \"America/Chicago\"\nformat = \"%Y%m%d\"",
            &[],
        );
        assert!(refused(&other_format).starts_with("identity needs equal definitions"));
        assert!(
            resolve(identity, None, Some(&d))
                .unwrap_err()
                .contains("not unpartitioned and daily partitions")
        );
    }

    #[test]
    fn fields_that_do_not_apply_to_a_mapping_kind_are_refused() {
        let d = daily();
        let err = |spec: &str| resolve(Some(spec), Some(&d), Some(&d)).unwrap_err();
        assert_eq!(
            err("type = \"all\"\nstart_offset = -1"),
            "`start_offset` does not apply to a all mapping"
        );
        assert_eq!(
            err("type = \"time_window\"\ndimension = \"date\""),
            "`dimension` does not apply to a timewindow mapping"
        );
        assert_eq!(
            err("type = \"identity\"\nmap = { a = [\"b\"] }"),
            "`map` does not apply to a identity mapping"
        );
    }

    #[test]
    fn multi_to_single_joins_a_multi_and_a_single_definition_only() {
        let m = multi();
        let spec = Some("type = \"multi_to_single\"\ndimension = \"date\"");
        assert_eq!(
            resolve(spec, Some(&m), Some(&m)).unwrap_err(),
            "multi_to_single joins a multi and a single definition, not multi partitions and multi partitions"
        );
        let d = daily();
        assert!(resolve(spec, Some(&d), Some(&d)).is_err());
        assert!(resolve(spec, Some(&m), Some(&d)).is_ok());
        assert!(resolve(spec, Some(&d), Some(&m)).is_ok());
    }

    #[test]
    fn set_mappings_map_every_range_of_the_set() {
        let keys = DynamicKeys::new();
        let env = PartitionEnv {
            now: now(),
            dynamic: &keys,
        };
        let d = daily();
        let yesterday = resolve(
            Some("type = \"time_window\"\nstart_offset = -1\nend_offset = -1"),
            Some(&d),
            Some(&d),
        )
        .unwrap();
        let down = PartitionSet::from_ranges([2..3, 5..7]);
        let up = PartitionSet::from_ranges([1..2, 4..6]);
        assert_eq!(yesterday.upstream_of_set(&down, env), up);
        assert_eq!(yesterday.downstream_of_set(&up, env), down);
    }
}
