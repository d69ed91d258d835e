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
