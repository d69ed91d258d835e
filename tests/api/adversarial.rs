//! Every query and mutation, with hostile values for every argument: huge, negative,
//! empty, 1 MB strings, control characters, odd Unicode, every enum value, long lists,
//! deep JSON; and headers that are not text. The fields and their argument types come
//! from introspection, so a field added later is crawled too. Nothing may answer HTTP 500
//! or INTERNAL, the server's memory stays bounded, and a refused mutation stores nothing.

use super::security::raw_bytes;
use super::*;

const TYPE_REF: &str = "fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }";

/// An argument's type: the named type, and the GraphQL type as written (`[String!]!`).
#[derive(Debug, Clone)]
struct ArgType {
    named: String,
    written: String,
    list: bool,
    /// `!` on the outside: it must be given.
    required: bool,
}

fn arg_type(t: &Value) -> ArgType {
    match t["kind"].as_str().unwrap() {
        "NON_NULL" => {
            let inner = arg_type(&t["ofType"]);
            ArgType {
                written: format!("{}!", inner.written),
                required: true,
                ..inner
            }
        }
        "LIST" => {
            let inner = arg_type(&t["ofType"]);
            ArgType {
                written: format!("[{}]", inner.written),
                list: true,
                required: false,
                ..inner
            }
        }
        _ => {
            let name = t["name"].as_str().unwrap().to_owned();
            ArgType {
                named: name.clone(),
                written: name,
                list: false,
                required: false,
            }
        }
    }
}

fn named_kind(t: &Value) -> String {
    match t["ofType"].is_null() {
        true => t["kind"].as_str().unwrap().to_owned(),
        false => named_kind(&t["ofType"]),
    }
}

/// A value a caller would plausibly send for an argument (so the other arguments of a
/// field do not fail first).
fn plausible(name: &str, t: &ArgType, enums: &BTreeMap<String, Vec<String>>, day: &str) -> Value {
    let one = match t.named.as_str() {
        "String" => json!(match name {
            "asset" | "key" | "selection" => "ops/census",
            "partition" | "from" | "to" => day,
            "definition" => "patients",
            "name" => "crawler",
            "id" => "no-such-id",
            _ => "x",
        }),
        "Int" => json!(match name {
            "first" => 5,
            "depth" => 1,
            _ => 1,
        }),
        "Int64" => json!(0),
        "Boolean" => json!(false),
        "JSON" => json!({ "rows": 1 }),
        "DateTime" => json!("2025-01-01T00:00:00Z"),
        other => match enums.get(other) {
            Some(values) => json!(values[0]),
            None => panic!("no plausible value for type {other} (argument {name})"),
        },
    };
    if t.list { json!([one]) } else { one }
}

/// Hostile values for a named type.
fn hostile(named: &str, enums: &BTreeMap<String, Vec<String>>) -> Vec<Value> {
    match named {
        "String" => vec![
            json!(""),
            json!(" "),
            json!("x".repeat(1_000_000)),
            json!("\u{0}\u{7}\t\r\n\u{1b}[31m"),
            json!("../../../etc/passwd"),
            json!("' OR '1'='1'; DROP TABLE runs; --"),
            json!("masked:0"),
            json!("\u{1F980}".repeat(5_000)),
            json!("\u{202E}\u{FEFF}\u{FFFF}"),
            json!("-1"),
            json!("9999-99-99"),
            json!("*"),
            json!("+*+,-*"),
            json!("300000y"),
            json!("9223372036854775807s"),
            json!("-5s"),
            json!("* * * * * * * *"),
        ],
        "Int" => vec![json!(0), json!(-1), json!(i32::MAX), json!(i32::MIN)],
        "Int64" => vec![
            json!(i64::MAX),
            json!(i64::MIN),
            json!(-1),
            json!("99999999999999999999999"),
        ],
        "Boolean" => vec![json!(true)],
        "JSON" => {
            let mut deep = json!(1);
            for _ in 0..100 {
                deep = json!([deep]);
            }
            vec![
                json!(null),
                deep,
                json!({ "k": "x".repeat(70_000) }),
                json!(vec![1; 10_000]),
                json!("not an object"),
            ]
        }
        "DateTime" => vec![
            json!("0000-01-01T00:00:00Z"),
            json!("+262143-12-31T23:59:59Z"),
            json!("not a date"),
        ],
        other => enums
            .get(other)
            .unwrap_or_else(|| panic!("no hostile values for type {other}"))
            .iter()
            .map(|v| json!(v))
            .collect(),
    }
}

/// What a refused mutation must leave unchanged, read from the SQLite store.
fn fingerprint(db: &Path) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Row as _;
        let url = format!("sqlite:{}?mode=ro", db.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let mut out = String::new();
        for sql in [
            "SELECT count(*) || '' FROM audit_log WHERE action <> 'phi.read' AND action NOT LIKE '%.dry_run'",
            "SELECT count(*) || '/' || count(revoked_at) FROM api_tokens",
            "SELECT count(*) || '' FROM backfills",
            "SELECT coalesce(group_concat(asset || '=' || policy, ';'), '') FROM freshness_overrides",
            "SELECT count(*) || '' FROM dynamic_partitions",
            "SELECT count(*) || '' FROM runs WHERE status = 'canceled'",
        ] {
            let v: String = sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get(0);
            out.push_str(&v);
            out.push('|');
        }
        pool.close().await;
        out
    })
}

pub(crate) fn adversarial_arguments_never_crash_or_store() {
    let w = World::start(&Backend::Sqlite, false);
    let db = w.dir().join("cairn.db");
    let schema = w.q(
        &w.admin,
        &format!(
            "{{ __schema {{ types {{ name kind enumValues {{ name }} }} }}
               q: __type(name: \"Query\") {{ fields {{ name args {{ name type {{ ...T }} }} type {{ ...T }} }} }}
               m: __type(name: \"Mutation\") {{ fields {{ name args {{ name type {{ ...T }} }} type {{ ...T }} }} }} }}
             {TYPE_REF}"
        ),
        json!({}),
    );
    let enums: BTreeMap<String, Vec<String>> = schema["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "ENUM" && !t["name"].as_str().unwrap().starts_with("__"))
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                keys_of(&t["enumValues"], "name"),
            )
        })
        .collect();
    let day = w.days[0].clone();
    let mut requests = 0;
    let mut refused_mutations = 0;
    for (root, keyword) in [("q", "query"), ("m", "mutation")] {
        let fields = schema[root]["fields"].as_array().unwrap().clone();
        assert!(fields.len() > 5, "{root}: {fields:?}");
        for field in fields {
            let name = field["name"].as_str().unwrap();
            let selection = if named_kind(&field["type"]) == "OBJECT" {
                " { __typename }"
            } else {
                ""
            };
            let args: Vec<(String, ArgType)> = field["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a["name"].as_str().unwrap().to_owned(), arg_type(&a["type"])))
                .collect();
            let declared: Vec<String> = args
                .iter()
                .map(|(n, t)| format!("${n}: {}", t.written))
                .collect();
            let passed: Vec<String> = args.iter().map(|(n, _)| format!("{n}: ${n}")).collect();
            let query = if args.is_empty() {
                format!("{keyword} {{ {name}{selection} }}")
            } else {
                format!(
                    "{keyword}({}) {{ {name}({}){selection} }}",
                    declared.join(", "),
                    passed.join(", ")
                )
            };
            // Required arguments get a plausible value, optional ones are left out, so
            // each hostile value is what decides the answer.
            let base: serde_json::Map<String, Value> = args
                .iter()
                .filter(|(_, t)| t.required)
                .map(|(n, t)| (n.clone(), plausible(n, t, &enums, &day)))
                .collect();
            let mut cases: Vec<(String, Value)> =
                vec![("plausible".into(), Value::Object(base.clone()))];
            for (arg, t) in &args {
                let mut values = hostile(&t.named, &enums);
                if t.list {
                    let element = values.first().cloned().unwrap_or(json!(null));
                    values = values.into_iter().map(|v| json!([v])).collect();
                    values.push(json!([]));
                    values.push(json!(vec![element; 20_000]));
                }
                for v in values {
                    let mut vars = base.clone();
                    vars.insert(arg.clone(), v);
                    cases.push((arg.clone(), Value::Object(vars)));
                }
            }
            for (arg, vars) in cases {
                let before = (keyword == "mutation").then(|| fingerprint(&db));
                let a = w.post(Some(&w.admin), &query, vars);
                requests += 1;
                let what = format!("{name}({arg}=...)");
                assert!(
                    a.status < 500,
                    "{what}: HTTP {}: {}",
                    a.status,
                    cut(&a.body)
                );
                assert!(
                    !a.body.contains("\"INTERNAL\""),
                    "{what}: INTERNAL: {}",
                    cut(&a.body)
                );
                assert!(
                    a.body.len() < 64 * 1024 || a.json["errors"].is_null(),
                    "{what}: an error of {} bytes",
                    a.body.len()
                );
                if keyword == "mutation" {
                    // Whatever a mutation stored, every asset's status still reads.
                    let probe = w.post(
                        Some(&w.admin),
                        "{ assets(first: 500) { items { freshness { status nextChange } staleness { reason } } } }",
                        json!({}),
                    );
                    assert!(
                        probe.status == 200 && probe.json["errors"].is_null(),
                        "after {what}: {}",
                        cut(&probe.body)
                    );
                }
                let refused = a.json["data"].is_null() || a.json["data"][name].is_null();
                if let Some(before) = before
                    && refused
                    && !a.json["errors"].is_null()
                {
                    refused_mutations += 1;
                    assert_eq!(
                        fingerprint(&db),
                        before,
                        "{what} was refused ({}) but changed the store",
                        a.code()
                    );
                }
            }
        }
    }
    // Headers that are not text, and an unknown scheme, are unauthenticated.
    for authorization in [
        &b"Bearer \xff\xfe"[..],
        b"\xc3\x28",
        b"Basic YTpi",
        b"Bearer",
    ] {
        let mut head = format!(
            "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nAuthorization: ",
            w.server.addr
        )
        .into_bytes();
        head.extend_from_slice(authorization);
        let r = raw_bytes(&w.server.addr, &head, b"{}");
        assert_eq!(r.status, 401, "{authorization:?}: {}", r.body);
    }
    let peak = super::security::peak_rss_kib(w.server.child.id());
    eprintln!(
        "adversarial crawl: {requests} requests, {refused_mutations} refused mutations, server peak {} MiB",
        peak / 1024
    );
    assert!(requests > 500, "only {requests} requests");
    assert!(peak < 100 * 1024, "server peak memory {peak} KiB");
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(400);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
