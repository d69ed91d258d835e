//! Checks OpenLineage run events against the published JSON Schema kept in
//! `schemas/openlineage/` (see its README), offline: every file there is registered under
//! its `$id`. Shared by `crates/cairn-exec/tests/lineage_http.rs` and `tests/openlineage.rs`
//! (included with `#[path]`); both crates live two levels below the repository.

use serde_json::{Value, json};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/openlineage");

/// The facets Cairn emits, each described by one of the schema files; any other facet
/// name in an event is a failure (nothing unchecked gets out).
const KNOWN_FACETS: [&str; 5] = [
    "version",
    "errorMessage",
    "jobType",
    "cairn_partition",
    "cairn_materialization",
];

pub struct Schemas {
    event: jsonschema::Validator,
    /// Each facet file's root: what a facets object holding its facet must look like.
    facets: Vec<(String, jsonschema::Validator)>,
}

impl Schemas {
    pub fn load() -> Self {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(DIR).expect("schemas/openlineage exists") {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let schema: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                let id = schema["$id"]
                    .as_str()
                    .expect("every schema has an $id")
                    .to_owned();
                files.push((id, schema));
            }
        }
        let mut registry = jsonschema::Registry::new();
        for (id, schema) in &files {
            registry = registry.add(id.as_str(), schema.clone()).unwrap();
        }
        let registry = registry.prepare().unwrap();
        let validator = |id: &str| {
            jsonschema::options()
                .with_registry(&registry)
                .should_validate_formats(true)
                .build(&json!({ "$ref": id }))
                .unwrap_or_else(|e| panic!("schema {id}: {e}"))
        };
        let core = "https://openlineage.io/spec/2-0-2/OpenLineage.json";
        let event = validator(core);
        let facets = files
            .iter()
            .filter(|(id, _)| id != core)
            .map(|(id, _)| (id.clone(), validator(id)))
            .collect();
        Self { event, facets }
    }

    /// Every problem with one event, as text; empty when it is valid.
    pub fn problems(&self, event: &Value) -> Vec<String> {
        let mut problems: Vec<String> = self
            .event
            .iter_errors(event)
            .map(|e| format!("OpenLineage.json: {e} at {}", e.instance_path()))
            .collect();
        let mut objects = vec![
            ("run.facets", &event["run"]["facets"]),
            ("job.facets", &event["job"]["facets"]),
        ];
        for side in ["inputs", "outputs"] {
            for d in event[side].as_array().into_iter().flatten() {
                objects.push((side, &d["facets"]));
            }
        }
        for (place, facets) in objects {
            let Some(map) = facets.as_object() else {
                continue;
            };
            for name in map.keys() {
                if !KNOWN_FACETS.contains(&name.as_str()) {
                    problems.push(format!("{place}: facet {name} has no schema here"));
                }
            }
            for (id, v) in &self.facets {
                problems.extend(
                    v.iter_errors(facets)
                        .map(|e| format!("{place} against {id}: {e} at {}", e.instance_path())),
                );
            }
        }
        problems
    }

    #[track_caller]
    pub fn assert_valid(&self, event: &Value) {
        let problems = self.problems(event);
        assert!(problems.is_empty(), "{problems:#?}\nin {event:#}");
    }
}
