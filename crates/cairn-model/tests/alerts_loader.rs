//! alerts.toml through the definitions loader: checked against the graph, reported with
//! file, line and field, and never mistaken for an asset definitions file.

use std::path::Path;

use cairn_model::alerts::{AlertEvent, load_alerts};
use cairn_model::loader::load_dir;

const ASSET: &str = r#"
[[asset]]
key = "staging/labs"
classification = "phi"
compute = { command = ["true"] }
"#;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The example warehouse's alerts.toml validates, and its rules route as written.
#[test]
fn the_example_warehouse_alerts_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let graph = load_dir(&dir).unwrap_or_else(|d| panic!("{:#?}", d.0));
    let config = load_alerts(&dir, &graph).unwrap_or_else(|d| panic!("{:#?}", d.0));
    assert!(config.channels.contains_key("oncall_email"));
    let phi = graph
        .id_of("staging/patients")
        .expect("a phi asset of the example");
    let routes = config.routes(AlertEvent::RunFailed, Some(phi));
    let channels: Vec<&str> = routes.iter().map(|r| r.channel.name.as_str()).collect();
    assert_eq!(channels, ["oncall_email", "team_chat"], "each channel once");
    assert_eq!(routes[0].rule.name, "clinical_problems");
}

#[test]
fn problems_in_alerts_toml_fail_loading_with_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("assets");
    write(&dir, "a.toml", ASSET);
    write(
        &dir,
        "alerts.toml",
        "[channel.chat]\nkind = \"slack\"\nurl_secret = \"CHAT_URL\"\n\n[[rule]]\nname = \"r\"\nevents = [\"run_failed\"]\nselect = \"staging/lasb\"\nchannels = [\"chat\"]\n",
    );
    let err = load_dir(&dir).unwrap_err();
    let shown: Vec<String> = err.0.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        shown,
        [
            "assets/alerts.toml:8:10: rule[0].select: selection term \"staging/lasb\": no asset has the key \"staging/lasb\""
        ]
    );
}

#[test]
fn alerts_toml_is_checked_even_when_the_assets_are_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("assets");
    write(&dir, "a.toml", "[[asset]]\nkey = \"Bad Key\"\n");
    write(&dir, "alerts.toml", "[channel.x]\nkind = \"pager\"\n");
    let err = load_dir(&dir).unwrap_err();
    assert!(err.0.iter().any(|d| d.file.ends_with("a.toml")));
    assert!(
        err.0
            .iter()
            .any(|d| d.file.ends_with("alerts.toml") && d.line == 2),
        "{:#?}",
        err.0
    );
}

/// Only the top-level alerts.toml is the alerts file; no file means no alerts.
#[test]
fn only_the_top_level_alerts_toml_is_special() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("assets");
    write(&dir, "a.toml", ASSET);
    let graph = load_dir(&dir).unwrap();
    assert!(load_alerts(&dir, &graph).unwrap().is_empty());
    write(
        &dir,
        "nested/alerts.toml",
        "[channel.x]\nkind = \"slack\"\n",
    );
    let err = load_dir(&dir).unwrap_err();
    assert!(
        err.0[0].message.contains("unknown top-level key `channel`"),
        "{:#?}",
        err.0
    );
}
