//! Partitions definitions, partition sets and mappings.
//!
//! Everything here works on partition *indices* (`u32`): a definition converts between
//! keys and indices, a [`PartitionSet`] holds ranges of indices, a [`PartitionMapping`]
//! turns downstream index ranges into upstream ones and back. Indices are stable: they
//! never change as time passes or dynamic keys are added.

mod dynamic;
mod mapping;
mod set;
mod spec;
mod time;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};

pub use dynamic::DynamicKeys;
pub use mapping::PartitionMapping;
pub use set::PartitionSet;
pub use spec::{DimensionSpec, MappingKind, MappingSpec, PartitionsKind, PartitionsSpec};
pub use time::{Granularity, TimeWindows};

/// What partition arithmetic needs besides the definitions: the time of evaluation (time
/// windows grow) and the runtime keys of dynamic definitions.
#[derive(Debug, Clone, Copy)]
pub struct PartitionEnv<'a> {
    pub now: DateTime<Utc>,
    pub dynamic: &'a DynamicKeys,
}

/// A validated partitions definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionsDef {
    Time(TimeWindows),
    Static(StaticPartitions),
    Multi(MultiPartitions),
    Dynamic(DynamicPartitions),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPartitions {
    keys: Vec<String>,
    index: HashMap<String, u32>,
}

/// Two dimensions, a static one and a time one; key `static|time`.
///
/// Index = `time_index * static_len + static_index`, so a new time window appends
/// `static_len` partitions and no existing index moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiPartitions {
    pub static_name: String,
    pub static_dim: StaticPartitions,
    pub time_name: String,
    pub time_dim: TimeWindows,
    /// The names of the partitions definitions the dimensions were declared with.
    pub static_def: String,
    pub time_def: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicPartitions {
    /// The definition's name: runtime keys are stored under it.
    pub name: String,
    /// Keys are personal data (an MRN, an encounter id): treated like PHI values.
    pub sensitive: bool,
}

/// A problem with one field of a partitions definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Relative to the definition, e.g. `start`; empty for the definition as a whole.
    pub field: String,
    pub message: String,
}

fn spec_error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl StaticPartitions {
    pub fn new(keys: Vec<String>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("a static definition needs at least one key".into());
        }
        let mut index = HashMap::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            validate_key(key)?;
            if index.insert(key.clone(), i as u32).is_some() {
                return Err(format!("key {key:?} is listed twice"));
            }
        }
        Ok(Self { keys, index })
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn len(&self) -> u32 {
        self.keys.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn index_of(&self, key: &str) -> Option<u32> {
        self.index.get(key).copied()
    }
}

/// Keys are printed in logs, URLs and environment variables: keep them plain.
fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a partition key cannot be empty".into());
    }
    if let Some(c) = key
        .chars()
        .find(|c| *c == '|' || c.is_control() || *c == '/')
    {
        return Err(format!(
            "partition key {key:?} contains {c:?}, which is reserved"
        ));
    }
    Ok(())
}

impl PartitionsDef {
    /// Validates a definition. `lookup` returns already-built definitions by name (multi
    /// definitions name their dimensions' definitions); the loader builds the others first.
    pub fn from_spec(
        name: &str,
        spec: &PartitionsSpec,
        lookup: &dyn Fn(&str) -> Option<Arc<PartitionsDef>>,
    ) -> Result<Self, Vec<SpecError>> {
        let mut errors = Vec::new();
        let kind = spec.kind;
        // Fields that do not apply to this kind are mistakes, not noise.
        let applies: &[&str] = match kind {
            PartitionsKind::Hourly | PartitionsKind::Daily | PartitionsKind::Monthly => {
                &["start", "end", "timezone", "end_offset", "format"]
            }
            PartitionsKind::Weekly => &[
                "start",
                "end",
                "timezone",
                "end_offset",
                "format",
                "week_starts_on",
            ],
            PartitionsKind::Static => &["keys"],
            PartitionsKind::Multi => &["dimensions"],
            PartitionsKind::Dynamic => &["sensitive"],
        };
        let present = [
            ("start", spec.start.is_some()),
            ("end", spec.end.is_some()),
            ("timezone", spec.timezone.is_some()),
            ("end_offset", spec.end_offset.is_some()),
            ("format", spec.format.is_some()),
            ("week_starts_on", spec.week_starts_on.is_some()),
            ("keys", spec.keys.is_some()),
            ("dimensions", spec.dimensions.is_some()),
            ("sensitive", spec.sensitive.is_some()),
        ];
        for (field, is_present) in present {
            if is_present && !applies.contains(&field) {
                errors.push(spec_error(
                    field,
                    format!("`{field}` does not apply to {} partitions", kind.as_str()),
                ));
            }
        }
        let def = match kind {
            PartitionsKind::Hourly
            | PartitionsKind::Daily
            | PartitionsKind::Weekly
            | PartitionsKind::Monthly => {
                time_from_spec(kind, spec, &mut errors).map(PartitionsDef::Time)
            }
            PartitionsKind::Static => match &spec.keys {
                None => {
                    errors.push(spec_error("keys", "a static definition needs `keys`"));
                    None
                }
                Some(keys) => StaticPartitions::new(keys.clone())
                    .map_err(|m| errors.push(spec_error("keys", m)))
                    .ok()
                    .map(PartitionsDef::Static),
            },
            PartitionsKind::Dynamic => Some(PartitionsDef::Dynamic(DynamicPartitions {
                name: name.to_owned(),
                sensitive: spec.sensitive.unwrap_or(false),
            })),
            PartitionsKind::Multi => {
                multi_from_spec(spec, lookup, &mut errors).map(PartitionsDef::Multi)
            }
        };
        match def {
            Some(def) if errors.is_empty() => Ok(def),
            _ => Err(errors),
        }
    }

    pub fn kind(&self) -> PartitionsKind {
        match self {
            PartitionsDef::Time(t) => match t.granularity {
                Granularity::Hourly => PartitionsKind::Hourly,
                Granularity::Daily => PartitionsKind::Daily,
                Granularity::Weekly => PartitionsKind::Weekly,
                Granularity::Monthly => PartitionsKind::Monthly,
            },
            PartitionsDef::Static(_) => PartitionsKind::Static,
            PartitionsDef::Multi(_) => PartitionsKind::Multi,
            PartitionsDef::Dynamic(_) => PartitionsKind::Dynamic,
        }
    }

    /// The number of partitions that exist in `env`. Indices below it are partitions
    /// (dynamic definitions may have removed keys: see [`Self::key_of`]).
    pub fn len(&self, env: PartitionEnv<'_>) -> u32 {
        match self {
            PartitionsDef::Time(t) => t.len_at(env.now),
            PartitionsDef::Static(s) => s.len(),
            PartitionsDef::Multi(m) => m
                .time_dim
                .len_at(env.now)
                .saturating_mul(m.static_dim.len()),
            PartitionsDef::Dynamic(d) => env.dynamic.len(&d.name),
        }
    }

    /// The partitions that exist in `env`, as a set (without removed dynamic keys).
    pub fn all(&self, env: PartitionEnv<'_>) -> PartitionSet {
        match self {
            PartitionsDef::Dynamic(d) => env.dynamic.live(&d.name),
            _ => PartitionSet::from_range(0..self.len(env)),
        }
    }

    /// The key of an index, if that partition exists in `env`.
    pub fn key_of(&self, index: u32, env: PartitionEnv<'_>) -> Option<String> {
        if index >= self.len(env) {
            return None;
        }
        match self {
            PartitionsDef::Time(t) => Some(t.key_of(index)),
            PartitionsDef::Static(s) => s.keys.get(index as usize).cloned(),
            PartitionsDef::Multi(m) => {
                let n = m.static_dim.len();
                Some(format!(
                    "{}|{}",
                    m.static_dim.keys[(index % n) as usize],
                    m.time_dim.key_of(index / n)
                ))
            }
            PartitionsDef::Dynamic(d) => env.dynamic.key_of(&d.name, index).map(str::to_owned),
        }
    }

    /// The index of a key, if it names a partition that exists in `env`.
    pub fn index_of(&self, key: &str, env: PartitionEnv<'_>) -> Option<u32> {
        let index = match self {
            PartitionsDef::Time(t) => u32::try_from(t.parse_key(key)?).ok()?,
            PartitionsDef::Static(s) => s.index_of(key)?,
            PartitionsDef::Multi(m) => {
                let (s, t) = key.split_once('|')?;
                let s = m.static_dim.index_of(s)?;
                let t = u32::try_from(m.time_dim.parse_key(t)?).ok()?;
                t.checked_mul(m.static_dim.len())?.checked_add(s)?
            }
            PartitionsDef::Dynamic(d) => return env.dynamic.index_of(&d.name, key),
        };
        (index < self.len(env)).then_some(index)
    }

    /// The time window of a partition, for time and multi definitions.
    pub fn window(&self, index: u32) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match self {
            PartitionsDef::Time(t) => Some(t.window(i64::from(index))),
            PartitionsDef::Multi(m) => {
                Some(m.time_dim.window(i64::from(index / m.static_dim.len())))
            }
            _ => None,
        }
    }

    /// Whether keys are personal data (see DESIGN.md, "Classification and PHI").
    pub fn has_sensitive_keys(&self) -> bool {
        matches!(
            self,
            PartitionsDef::Dynamic(DynamicPartitions {
                sensitive: true,
                ..
            })
        )
    }

    /// One line for listings: "daily from 2025-01-01, America/Chicago".
    pub fn describe(&self) -> String {
        match self {
            PartitionsDef::Time(t) => t.describe(),
            PartitionsDef::Static(s) => format!("static, {} keys", s.len()),
            PartitionsDef::Multi(m) => format!("multi {} x {}", m.static_name, m.time_name),
            PartitionsDef::Dynamic(d) if d.sensitive => "dynamic, sensitive keys".into(),
            PartitionsDef::Dynamic(_) => "dynamic".into(),
        }
    }
}

fn time_from_spec(
    kind: PartitionsKind,
    spec: &PartitionsSpec,
    errors: &mut Vec<SpecError>,
) -> Option<TimeWindows> {
    let granularity = match kind {
        PartitionsKind::Hourly => Granularity::Hourly,
        PartitionsKind::Daily => Granularity::Daily,
        PartitionsKind::Weekly => Granularity::Weekly,
        _ => Granularity::Monthly,
    };
    let before = errors.len();
    let timezone = crate::policy::parse_timezone(spec.timezone.as_deref())
        .map_err(|m| errors.push(spec_error("timezone", m)))
        .ok();
    let start = match &spec.start {
        None => {
            errors.push(spec_error(
                "start",
                format!("{} partitions need a `start`", kind.as_str()),
            ));
            None
        }
        Some(raw) => parse_local(raw, granularity)
            .map_err(|m| errors.push(spec_error("start", m)))
            .ok(),
    };
    let end = spec
        .end
        .as_deref()
        .map(|raw| {
            parse_local(raw, granularity)
                .map_err(|m| errors.push(spec_error("end", m)))
                .ok()
        })
        .unwrap_or(None);
    let week_starts_on = match spec.week_starts_on.as_deref() {
        None => Some(Weekday::Mon),
        Some(raw) => raw
            .parse::<Weekday>()
            .map_err(|_| {
                errors.push(spec_error(
                    "week_starts_on",
                    format!("{raw:?} is not a day of the week (e.g. \"monday\")"),
                ))
            })
            .ok(),
    };
    if errors.len() != before {
        return None;
    }
    TimeWindows::new(
        granularity,
        timezone?,
        start?,
        end,
        spec.end_offset.unwrap_or(0),
        spec.format.clone(),
        week_starts_on?,
    )
    .map_err(|(field, message)| errors.push(spec_error(field, message)))
    .ok()
}

/// "2024-01-01" (midnight) or, for hourly, "2024-01-01T06:00" too.
fn parse_local(raw: &str, granularity: Granularity) -> Result<NaiveDateTime, String> {
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(date.and_time(NaiveTime::MIN));
    }
    if granularity == Granularity::Hourly {
        for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
                return Ok(t);
            }
        }
        return Err(format!(
            "{raw:?} is not a date or local time (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM)"
        ));
    }
    Err(format!("{raw:?} is not a date (expected YYYY-MM-DD)"))
}

fn multi_from_spec(
    spec: &PartitionsSpec,
    lookup: &dyn Fn(&str) -> Option<Arc<PartitionsDef>>,
    errors: &mut Vec<SpecError>,
) -> Option<MultiPartitions> {
    let Some(dims) = &spec.dimensions else {
        errors.push(spec_error(
            "dimensions",
            "a multi definition needs `dimensions` (a static one, then a time one)",
        ));
        return None;
    };
    if dims.len() != 2 {
        errors.push(spec_error(
            "dimensions",
            format!(
                "a multi definition has exactly two dimensions, not {}",
                dims.len()
            ),
        ));
        return None;
    }
    if dims[0].name == dims[1].name {
        errors.push(spec_error(
            "dimensions",
            format!("both dimensions are named {:?}", dims[0].name),
        ));
        return None;
    }
    let resolve = |d: &DimensionSpec, errors: &mut Vec<SpecError>| {
        let def = lookup(&d.partitions);
        if def.is_none() {
            errors.push(spec_error(
                "dimensions",
                format!(
                    "dimension {:?} names unknown partitions definition {:?}",
                    d.name, d.partitions
                ),
            ));
        }
        def
    };
    let (first, second) = (resolve(&dims[0], errors), resolve(&dims[1], errors));
    match (first.as_deref(), second.as_deref()) {
        (Some(PartitionsDef::Static(s)), Some(PartitionsDef::Time(t))) => Some(MultiPartitions {
            static_name: dims[0].name.clone(),
            static_dim: s.clone(),
            time_name: dims[1].name.clone(),
            time_dim: t.clone(),
            static_def: dims[0].partitions.clone(),
            time_def: dims[1].partitions.clone(),
        }),
        (Some(_), Some(_)) => {
            errors.push(spec_error(
                "dimensions",
                "the first dimension must be a static definition and the second a time-window one",
            ));
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(toml_text: &str) -> Result<PartitionsDef, Vec<SpecError>> {
        let spec: PartitionsSpec = toml::from_str(toml_text).unwrap();
        PartitionsDef::from_spec("p", &spec, &|_| None)
    }

    #[test]
    fn unknown_and_misplaced_fields_are_rejected() {
        let err = toml::from_str::<PartitionsSpec>(
            "type = \"daily\"\nstart = \"2024-01-01\"\nstrat = \"x\"",
        )
        .unwrap_err();
        assert!(err.message().contains("unknown field `strat`"), "{err}");
        let errs = build("type = \"daily\"\nstart = \"2024-01-01\"\nkeys = [\"a\"]").unwrap_err();
        assert_eq!(errs[0].field, "keys");
        let errs = build("type = \"static\"\nkeys = [\"a\", \"a\"]").unwrap_err();
        assert!(errs[0].message.contains("twice"));
    }

    #[test]
    fn dates_and_zones_are_validated() {
        let errs = build("type = \"daily\"\nstart = \"2024-02-30\"\ntimezone = \"Mars/Olympus\"")
            .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["timezone", "start"]);
    }
}
