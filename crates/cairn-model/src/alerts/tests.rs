use super::*;

fn check(text: &str) -> Vec<String> {
    parse_alerts(Path::new("assets/alerts.toml"), text, None)
        .1
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn a_complete_file_reads() {
    let text = r#"
[channel.oncall]
kind = "email"
smtp_host = "smtp.example.org"
from = "cairn@example.org"
to = ["oncall@example.org"]
username_secret = "SMTP_USER"
password_secret = "SMTP_PASSWORD"
rate_limit = { max_per_hour = 5 }

[channel.teams]
kind = "teams"
url_secret = "TEAMS_URL"
timeout = "5s"

[channel.local]
kind = "webhook"
url = "http://127.0.0.1:9000/hook"

[[rule]]
name = "failures"
events = ["run_failed", "freshness_breach"]
channels = ["oncall", "teams"]

[[rule]]
name = "everything_local"
events = ["backfill_finished"]
select = "*"
channels = ["local"]
resolve = false
"#;
    let (config, diagnostics) = parse_alerts(Path::new("alerts.toml"), text, None);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let config = config.unwrap();
    let oncall = &config.channels["oncall"];
    assert_eq!(oncall.max_per_hour, 5);
    assert_eq!(oncall.timeout, Duration::from_secs(30));
    let Transport::Email(email) = &oncall.transport else {
        panic!("email")
    };
    assert_eq!((email.port, email.tls), (587, SmtpTls::Starttls));
    assert_eq!(
        config.channels["teams"].transport,
        Transport::Webhook {
            format: WebhookFormat::Teams,
            url: UrlSource::Secret("TEAMS_URL".into())
        }
    );
    assert_eq!(config.channels["teams"].max_per_hour, DEFAULT_MAX_PER_HOUR);
    assert_eq!(config.rules.len(), 2);
    assert!(!config.rules[1].resolve);
    assert_eq!(config.rules[0].defined_at.line, 20);
}

#[test]
fn problems_name_line_and_field() {
    let text = r#"
[channel.mail]
kind = "email"
smtp_host = "smtp.example.org"
tls = "none"
from = "not an address"

[channel.slack]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/x"

[channel.hook]
kind = "webhook"
url = "https://example.org/hook?token=abc"
colour = "red"

[[rule]]
name = "r"
events = ["run_failed", "tea_time"]
channels = ["mail"]

[[rule]]
name = "s"
events = ["run_failed"]
channels = ["mial"]
select = "group:"
"#;
    let found = check(text);
    let expect = [
        "assets/alerts.toml:5:7: channel.mail.tls: `tls = \"none\"` is allowed only for a loopback host",
        "assets/alerts.toml:6:8: channel.mail.from: \"not an address\" is not an email address",
        "channel.mail.to: email channels need at least one recipient",
        "assets/alerts.toml:10:7: channel.slack.url: Slack and Teams webhook URLs are credentials",
        "channel.hook.colour: unknown field `colour`",
        "assets/alerts.toml:19:25: rule[0].events: unknown variant `tea_time`",
        "assets/alerts.toml:25:13: rule[1].channels[0]: unknown channel \"mial\"",
        "rule[1].select: selection term",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.contains(e)),
            "missing {e:?} in {found:#?}"
        );
    }
}

#[test]
fn unknown_top_level_keys_and_duplicate_rule_names_are_refused() {
    let found = check(
        "[channels.x]\nkind = \"slack\"\n[[rule]]\nname = \"a\"\nevents = [\"run_failed\"]\nchannels = []\n[[rule]]\nname = \"a\"\nevents = []\nchannels = []\n",
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("unknown top-level key `channels`")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f.contains("already used by rule[0]")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("rule[1].events: a rule needs at least one event")),
        "{found:?}"
    );
}

#[test]
fn secret_values_are_refused_where_names_are_expected() {
    let found =
        check("[channel.x]\nkind = \"webhook\"\nurl_secret = \"https://hooks.example.org/abc\"\n");
    assert!(
        found.iter().any(|f| f.contains("must be a secret's name")),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|f| f.contains("hooks.example.org")),
        "a secret written by mistake is not echoed: {found:?}"
    );
}

#[test]
fn plain_urls_carry_no_credentials() {
    assert!(check_plain_url("https://example.org/hook").is_ok());
    assert!(check_plain_url("http://localhost:8080/hook").is_ok());
    assert!(check_plain_url("http://[::1]:8080/hook").is_ok());
    assert!(check_plain_url("http://example.org/hook").is_err());
    assert!(check_plain_url("https://user:pw@example.org/").is_err());
    assert!(check_plain_url("https://example.org/?key=1").is_err());
    assert!(check_plain_url("ftp://example.org/").is_err());
    assert!(check_plain_url("https://example.org:99999/").is_err());
    assert!(check_plain_url("http://[::1/").is_err());
    assert!(is_loopback("127.0.0.2") && is_loopback("::1") && !is_loopback("10.0.0.1"));
}

#[test]
fn events_round_trip_their_names() {
    for e in AlertEvent::ALL {
        assert_eq!(AlertEvent::parse(e.as_str()), Some(e));
    }
}
