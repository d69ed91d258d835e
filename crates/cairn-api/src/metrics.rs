//! `/metrics`: Prometheus text exposition (format 0.0.4) through `prometheus-client`.
//!
//! Nothing is counted on the side: each scrape reads the store ([`Store::metrics`]: runs,
//! durations, the queue, alert deliveries, one consistent read), the reconciler's live view
//! (freshness and partitions by staleness reason per asset, as the API shows them) and its
//! handle (ticks, their durations, how long since its last pass), then encodes them with a
//! [`Collector`] registered for that scrape. So the values are the store's, whichever
//! process wrote them (a standby, a worker), and the reconciler's tick does nothing for
//! metrics but time itself.
//!
//! Labels name assets (never partitions: a partition key may be PHI, and there are too many),
//! statuses, reasons, alert channels and outcomes. docs/operations.md lists every metric.
//!
//! [`Store::metrics`]: cairn_store::Store::metrics

use std::time::Duration;

use cairn_engine::Pulse;
use cairn_model::AssetId;
use cairn_reconcile::freshness::FreshnessStatus;
use cairn_reconcile::staleness::{REASONS, ReasonCounts};
use cairn_store::{RunStatus, StoreMetrics};
use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric as _, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::schema::types::live_partitions;

/// Upper bounds of the run duration histogram: seconds-long checks to hours-long loads.
pub const RUN_DURATION_BOUNDS: [Duration; 12] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(2 * 60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 60 * 60),
    Duration::from_secs(6 * 60 * 60),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the store: {0}")]
    Store(#[from] cairn_store::Error),
    #[error("encoding the metrics")]
    Encode(#[from] std::fmt::Error),
}

/// One asset as the live view has it.
#[derive(Debug)]
struct AssetMetrics {
    key: String,
    /// Partitions that exist now (1 for an unpartitioned asset).
    partitions: u64,
    counts: ReasonCounts,
    /// Under an SLA: its status, and seconds until a breach if nothing is built (negative:
    /// since it began; `None`: time alone never brings one).
    freshness: Option<(FreshnessStatus, Option<f64>)>,
}

/// Everything one scrape shows, read before encoding (the encoder is synchronous).
#[derive(Debug)]
struct Scrape {
    store: StoreMetrics,
    now: DateTime<Utc>,
    /// `None` until the reconciler has loaded the store.
    assets: Option<Vec<AssetMetrics>>,
    /// The newest event the live view has applied.
    view_event_id: Option<i64>,
    ticks: u64,
    pulse: Pulse,
    tick_durations: Histogram,
    uptime: f64,
}

/// The `/metrics` body.
pub async fn render(state: &AppState) -> Result<String, Error> {
    let now = Utc::now();
    let store = state.store.metrics(now, &RUN_DURATION_BOUNDS).await?;
    let (assets, view_event_id) = {
        let view = state.reconciler.view().read().await;
        match view.as_ref() {
            None => (None, None),
            Some(view) => {
                let assets = view
                    .engine
                    .graph()
                    .assets()
                    .map(|(id, _)| asset_metrics(view, id, now))
                    .collect();
                (Some(assets), Some(view.engine.max_event_id()))
            }
        }
    };
    let scrape = Scrape {
        store,
        now,
        assets,
        view_event_id,
        ticks: state.reconciler.ticks(),
        pulse: state.reconciler.pulse(),
        tick_durations: state.reconciler.tick_durations(),
        uptime: (now - state.started_at).num_milliseconds() as f64 / 1e3,
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The asset's partitions by reason and its freshness, as the lineage graph and the asset
/// page show them (the same functions, at the same `now`).
fn asset_metrics(view: &cairn_engine::View, id: AssetId, now: DateTime<Utc>) -> AssetMetrics {
    let engine = &view.engine;
    let live = live_partitions(view, id, now);
    let counts = view.staleness.asset(id).counts_in(&live);
    let freshness = engine.freshness(id, now).map(|f| {
        let to_breach = engine
            .freshness_breach_at(id, now)
            .map(|at| (at - now).num_milliseconds() as f64 / 1e3);
        (f.status, to_breach)
    });
    AssetMetrics {
        key: engine.graph().asset(id).key.to_string(),
        partitions: live.len(),
        counts,
        freshness,
    }
}

/// Every status of every asset with runs, 0 included: a status that empties (the last
/// queued run claimed) then reads 0 rather than vanishing from graphs and sums.
fn runs_by_status(
    runs: &[cairn_store::metrics::RunsOf],
) -> impl Iterator<Item = ([(&'static str, &str); 2], u64)> {
    let mut by_asset: std::collections::BTreeMap<&str, [u64; RunStatus::ALL.len()]> =
        Default::default();
    for r in runs {
        let counts = by_asset.entry(r.asset.as_str()).or_default();
        // A status this build does not know (a newer Cairn's) is left out, not mislabelled.
        if let Some(i) = RunStatus::ALL.iter().position(|s| s.as_str() == r.status) {
            counts[i] += r.count;
        }
    }
    by_asset.into_iter().flat_map(|(asset, counts)| {
        RunStatus::ALL
            .iter()
            .zip(counts)
            .map(move |(status, n)| ([("asset", asset), ("status", status.as_str())], n))
    })
}

const FRESHNESS_STATUSES: [FreshnessStatus; 4] = [
    FreshnessStatus::Fresh,
    FreshnessStatus::Warn,
    FreshnessStatus::Breach,
    FreshnessStatus::Unknown,
];

/// One metric: its descriptor, then a sample per label set.
fn family<L: EncodeLabelSet, V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (L, V)>,
    mut sample: impl FnMut(&mut prometheus_client::encoding::MetricEncoder<'_>, V) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        sample(&mut metric.encode_family(&labels)?, value)?;
    }
    Ok(())
}

/// Counts are encoded as integers, measurements as floats.
fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> std::fmt::Result {
    family(encoder, name, help, MetricType::Gauge, samples, |m, v| {
        m.encode_gauge(&v)
    })
}

/// A gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: impl EncodeGaugeValue,
) -> std::fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let e = &mut encoder;
        let s = &self.store;

        gauges(
            e,
            "cairn_runs",
            "Runs in the store by asset and status (every status, 0 included, of each asset that has runs).",
            runs_by_status(&s.runs),
        )?;
        let bounds: Vec<f64> = RUN_DURATION_BOUNDS
            .iter()
            .map(Duration::as_secs_f64)
            .collect();
        family(
            e,
            "cairn_run_duration_seconds",
            "How long runs in the store took, from start to end, by asset and final status.",
            MetricType::Histogram,
            s.durations.iter().map(|d| {
                (
                    [("asset", d.asset.as_str()), ("status", d.status.as_str())],
                    d,
                )
            }),
            |m, d| {
                // Per-bucket counts; the encoder makes them cumulative and adds +Inf.
                let buckets: Vec<(f64, u64)> = bounds
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(d.buckets.iter().copied())
                    .collect();
                m.encode_histogram::<NoLabelSet>(d.sum_seconds, d.count, &buckets, None)
            },
        )?;
        gauges(
            e,
            "cairn_queue_depth",
            "Queued runs: ready (a free executor would claim them now) or delayed (waiting out a retry's backoff).",
            [
                ([("state", "ready")], s.queue.ready),
                ([("state", "delayed")], s.queue.delayed),
            ],
        )?;
        let oldest = s.queue.oldest_ready.map_or(0.0, |at| {
            (self.now - at).num_milliseconds().max(0) as f64 / 1e3
        });
        gauge(
            e,
            "cairn_queue_oldest_ready_seconds",
            "How long the longest-waiting ready run has been claimable (0 when none is).",
            oldest,
        )?;
        family(
            e,
            "cairn_alert_deliveries",
            "Alert delivery attempts recorded in the log, by channel and outcome (delivered, retryable, permanent, held_back, gave_up).",
            MetricType::Counter,
            s.alert_deliveries.iter().map(|d| {
                (
                    [
                        ("channel", d.channel.as_str()),
                        ("outcome", d.outcome.as_str()),
                    ],
                    d.count,
                )
            }),
            |m, n| m.encode_counter::<NoLabelSet, _, u64>(&n, None),
        )?;

        if let Some(assets) = &self.assets {
            self.encode_assets(e, assets)?;
        }

        e.encode_descriptor(
            "cairn_reconciler_ticks",
            "Reconciler ticks completed by this process (planned with the lease, runs enqueued).",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&self.ticks, None)?;
        self.tick_durations.encode(e.encode_descriptor(
            "cairn_reconciler_tick_duration_seconds",
            "How long this process's reconciler ticks took: reading the store, planning, writing the plan.",
            None,
            MetricType::Histogram,
        )?)?;
        if let Pulse::Running {
            since_last_pass,
            leader,
            ..
        } = self.pulse
        {
            if let Some(age) = since_last_pass {
                gauge(
                    e,
                    "cairn_reconciler_last_pass_age_seconds",
                    "Seconds since this process's reconciler last completed a pass (a tick, or a pass standing by while another holds the lease).",
                    age.as_secs_f64(),
                )?;
            }
            gauge(
                e,
                "cairn_reconciler_leader",
                "1 while this process's reconciler holds the lease (plans), 0 while it stands by.",
                u64::from(leader),
            )?;
        }
        if let Some(applied) = self.view_event_id {
            gauge(
                e,
                "cairn_reconciler_event_lag",
                "Events in the log that this process's reconciler has not applied yet.",
                (s.last_event_id - applied).max(0),
            )?;
        }
        gauge(
            e,
            "cairn_uptime_seconds",
            "Seconds since this process started.",
            self.uptime,
        )?;
        e.encode_descriptor(
            "cairn_build",
            "This build of Cairn.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
    }
}

impl Scrape {
    fn encode_assets(
        &self,
        e: &mut DescriptorEncoder<'_>,
        assets: &[AssetMetrics],
    ) -> std::fmt::Result {
        let under_sla = || {
            assets
                .iter()
                .filter_map(|a| a.freshness.map(|f| (a.key.as_str(), f)))
        };
        gauges(
            e,
            "cairn_freshness_status",
            "1 for an asset's freshness status under its SLA (fresh, warn, breach, unknown), 0 for the others; assets without an SLA have none.",
            under_sla().flat_map(|(key, (status, _))| {
                FRESHNESS_STATUSES.iter().map(move |s| {
                    (
                        [("asset", key), ("status", s.as_str())],
                        u64::from(*s == status),
                    )
                })
            }),
        )?;
        gauges(
            e,
            "cairn_freshness_seconds_to_breach",
            "Seconds until the asset breaches its SLA if nothing is materialized (negative: since the breach began); absent when time alone never brings a breach.",
            under_sla()
                .filter_map(|(key, (_, to_breach))| to_breach.map(|s| ([("asset", key)], s))),
        )?;
        gauges(
            e,
            "cairn_asset_partitions",
            "Partitions an asset has now (1 when unpartitioned).",
            assets
                .iter()
                .map(|a| ([("asset", a.key.as_str())], a.partitions)),
        )?;
        gauges(
            e,
            "cairn_partitions",
            "An asset's partitions by staleness reason (fresh, missing, code_changed, upstream_changed, upstream_stale, failed); a stale partition counts under each of its reasons.",
            assets.iter().flat_map(|a| {
                let key = a.key.as_str();
                std::iter::once(([("asset", key), ("reason", "fresh")], a.counts.fresh)).chain(
                    REASONS
                        .iter()
                        .zip(a.counts.by_reason)
                        .map(move |((_, reason), n)| ([("asset", key), ("reason", *reason)], n)),
                )
            }),
        )
    }
}
