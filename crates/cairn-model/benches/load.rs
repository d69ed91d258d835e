//! Loading and validating 10,000 generated asset definitions (target: under 1 s).
//!
//! `cargo bench -p cairn-model --bench load` (`CAIRN_BENCH_QUICK=1`: 500 assets, to check
//! the answer in seconds; `cargo test --benches` runs each benchmark once).

use std::fmt::Write as _;
use std::path::PathBuf;

use cairn_model::loader::{SourceFile, load_sources};
use criterion::{Criterion, criterion_group, criterion_main};

/// 10,000 assets in 100 files: daily partitioned, each reading up to three earlier
/// assets through identity, offset and `all` mappings, a layered DAG.
fn generated_warehouse(assets: usize, per_file: usize) -> Vec<SourceFile> {
    let mut files = vec![SourceFile {
        path: "assets/partitions.toml".into(),
        text: "[partitions.daily]\ntype = \"daily\"\nstart = \"2016-01-01\"\ntimezone = \"America/Chicago\"\n\n\
               [partitions.weekly]\ntype = \"weekly\"\nstart = \"2016-01-04\"\ntimezone = \"America/Chicago\"\n\n\
               [storage.clinical]\nmax_class = \"phi\"\n\n[pools.warehouse]\nmax_concurrent = 4\n"
            .into(),
    }];
    for file in 0..assets.div_ceil(per_file) {
        let mut text = String::new();
        for i in file * per_file..((file + 1) * per_file).min(assets) {
            let _ = write!(
                text,
                "[[asset]]\nkey = \"layer{}/asset_{i}\"\ndescription = \"generated asset {i}\"\nowners = [\"team@example.org\"]\n\
                 tags = {{ source = \"s{}\" }}\nkinds = [\"python\"]\npartitions = \"{}\"\nstorage = \"clinical\"\npool = \"warehouse\"\n\
                 code = [\"scripts/build.py\"]\nautomation = \"eager\"\n",
                i / 1000,
                i % 10,
                if i % 50 == 49 { "weekly" } else { "daily" },
            );
            if i < 100 {
                text.push_str("classification = \"phi\"\n");
            }
            let mut deps = Vec::new();
            if i >= 100 {
                for (n, back) in [(0, 100), (1, 97), (2, 1000)] {
                    if i >= back && (n == 0 || i % (n + 2) == 0) {
                        let up = i - back;
                        let mapping = match n {
                            0 => String::new(),
                            1 => ", mapping = { type = \"time_window\", start_offset = -1, end_offset = -1 }".into(),
                            _ => ", mapping = { type = \"all\" }".into(),
                        };
                        let same_kind = (up % 50 == 49) == (i % 50 == 49);
                        let mapping = if n == 1 && !same_kind {
                            String::new()
                        } else {
                            mapping
                        };
                        deps.push(format!(
                            "{{ asset = \"layer{}/asset_{up}\"{mapping} }}",
                            up / 1000
                        ));
                    }
                }
            }
            let _ = write!(
                text,
                "deps = [{}]\n\n[asset.compute]\ncommand = [\"python3\", \"scripts/build.py\"]\ntimeout = \"30m\"\n\n\
                 [asset.freshness]\nmax_lag = \"26h\"\nwarn_lag = \"20h\"\n\n[asset.retries]\nmax = 2\nbackoff = \"30s\"\n\n",
                deps.join(", ")
            );
        }
        files.push(SourceFile {
            path: PathBuf::from(format!("assets/gen/file_{file}.toml")),
            text,
        });
    }
    files
}

fn bench_load(c: &mut Criterion) {
    let n = if std::env::var_os("CAIRN_BENCH_QUICK").is_some() {
        500
    } else {
        10_000
    };
    let files = generated_warehouse(n, 100);
    let read_code = |_: &str| Ok(b"print('build')\n".to_vec());
    let graph = load_sources(&files, &read_code)
        .unwrap_or_else(|e| panic!("{:#?}", &e.0[..e.0.len().min(5)]));
    assert_eq!(graph.len(), n);
    let mut group = c.benchmark_group("loader");
    group.sample_size(10);
    group.bench_function("load_and_validate_10k_assets", |b| {
        b.iter(|| {
            load_sources(&files, &read_code)
                .map(|g| g.len())
                .unwrap_or(0)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
