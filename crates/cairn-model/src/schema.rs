//! Published JSON Schemas, generated from the Rust types that read the files.

/// The JSON Schema of one asset definitions file (`schemas/asset.schema.json`).
pub fn asset_file_schema_json() -> String {
    pretty(&schemars::schema_for!(crate::spec::FileSpec))
}

/// The JSON Schema of the alert rules file (`schemas/alerts.schema.json`).
pub fn alerts_file_schema_json() -> String {
    pretty(&schemars::schema_for!(crate::alerts::AlertsFileSpec))
}

/// A schema as committed under `schemas/`: pretty JSON ending with a newline.
pub fn pretty(schema: &schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    /// The committed file at `schemas/NAME` must equal `current` (rewritten instead with
    /// CAIRN_UPDATE_SCHEMAS set).
    fn check_committed(name: &str, current: &str, test: &str) {
        let path = format!("{}/../../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("CAIRN_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, current).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == current,
            "schemas/{name} is out of date: CAIRN_UPDATE_SCHEMAS=1 cargo test -p cairn-model {test}"
        );
    }

    #[test]
    fn committed_alerts_schema_is_current() {
        check_committed(
            "alerts.schema.json",
            &super::alerts_file_schema_json(),
            "committed_alerts_schema",
        );
    }

    /// The committed schema is what editors and CI validate against: it must not drift
    /// from the types the loader really uses.
    #[test]
    fn committed_asset_schema_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/asset.schema.json"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let current = super::asset_file_schema_json();
        if std::env::var_os("CAIRN_UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, &current).unwrap();
            return;
        }
        assert!(
            committed == current,
            "schemas/asset.schema.json is out of date: run `cargo run -p cairn -- schema asset > schemas/asset.schema.json` \
             (or CAIRN_UPDATE_SCHEMAS=1 cargo test -p cairn-model committed_asset_schema)"
        );
    }
}
