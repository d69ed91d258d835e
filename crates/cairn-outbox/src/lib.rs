//! The alert outbox (docs/alerts.md, "Delivery"): turns the log's facts into incidents
//! and delivers what the pure policy (`cairn_alert::policy::plan`) says is owed.
//!
//! Each step:
//! 1. reads the facts after its durable cursor (`retries_exhausted`, `freshness_changed`,
//!    backfill endings, and materializations, which clear a failure), applies them to the
//!    incident book, checks the reconciler's lease for a stall, and commits the incidents
//!    it changed with the new cursor in one transaction. Nothing is sent before that
//!    commit, so a crash between an incident and its delivery loses nothing: a restart
//!    reloads the incident and finds its alert still owed;
//! 2. plans, records give-ups and holds (a give-up raises `delivery_failing` for its
//!    channel), then sends each message and records its outcome at once (an `alert_sent`
//!    event and a delivery row). A crash between sending and recording can repeat only
//!    that one message, under the same idempotency key, which receivers may deduplicate.
//!
//! One outbox sends at a time per store: it holds the `alerts` lease.
//!
//! **Architecture invariant:** it reads the log, never the reconciler's memory, for what
//! to alert on (the reconciler's view only names a masked partition's position), so a
//! crash of either loses no alert.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cairn_alert::deliver::{Channel, Secrets};
use cairn_alert::incident::Condition;
use cairn_alert::policy::{self, limits, targets};
use cairn_alert::render::{self, AlertMessage, DigestMessage};
use cairn_alert::{
    AttemptRecord, DeliveryId, Incident, IncidentBook, IncidentKey, IncidentStatus, MaskedText,
    Outcome, PartitionRef, Phase, RetryPolicy, Sendable, Subject, Tracked, Transition,
};
use cairn_engine::Handle;
use cairn_engine::clock::Clock;
use cairn_model::AssetGraph;
use cairn_model::alerts::{AlertConfig, AlertEvent};
use cairn_store::{
    ALERTS_CURSOR, Delivery, Event, EventFilter, EventId, EventKind, NewDelivery, NewEvent,
    OutboxWrite, Store, StoredIncident,
};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// The log events the outbox turns into firings and clears.
const FACT_KINDS: [EventKind; 5] = [
    EventKind::RetriesExhausted,
    EventKind::Materialization,
    EventKind::FreshnessChanged,
    EventKind::BackfillCompleted,
    EventKind::BackfillCanceled,
];

/// Facts read per step.
const BATCH: u32 = 1_000;

const LEASE: &str = "alerts";

#[derive(Debug, Clone)]
pub struct OutboxOptions {
    /// Who holds the `alerts` lease (this process's worker id).
    pub holder: String,
    /// How often the log is read for new facts.
    pub poll: Duration,
    /// The reconciler is stalled when its lease has been expired this long.
    pub stalled_after: Duration,
    pub retry: RetryPolicy,
    /// Cairn's web UI, for links in messages.
    pub base_url: Option<String>,
    /// Closed incidents are kept in memory (to owe their resolve) this long.
    pub keep_closed: Duration,
}

impl OutboxOptions {
    pub fn new(holder: String) -> Self {
        Self {
            holder,
            poll: Duration::from_secs(1),
            stalled_after: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            base_url: None,
            keep_closed: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

pub struct Outbox {
    store: Store,
    config: AlertConfig,
    reconciler: Handle,
    channels: BTreeMap<String, Box<dyn Channel>>,
    options: OutboxOptions,
    clock: Arc<dyn Clock>,
}

/// What the outbox knows, as the store has it.
struct Book {
    incidents: IncidentBook,
    attempts: Vec<AttemptRecord>,
    cursor: EventId,
    /// Until when this process holds the `alerts` lease.
    lease_until: DateTime<Utc>,
    /// When this process started watching the reconciler (a stall is not told before
    /// `stalled_after` has passed since: a restart finds the old lease expired).
    watching_since: DateTime<Utc>,
}

impl Outbox {
    pub fn new(
        store: Store,
        config: AlertConfig,
        reconciler: Handle,
        secrets: Arc<dyn Secrets>,
        options: OutboxOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let channels = config
            .channels
            .iter()
            .map(|(name, def)| {
                (
                    name.clone(),
                    cairn_alert::deliver::channel(def, secrets.clone()),
                )
            })
            .collect();
        Self {
            store,
            config,
            reconciler,
            channels,
            options,
            clock,
        }
    }

    /// Runs until `shutdown`. A failing step (the store refusing writes, say) is logged
    /// and retried from what the store has.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut book = None;
        loop {
            let now = self.clock.now();
            let pause = match self.step(&mut book, now).await {
                Ok(wake_at) => {
                    let until = wake_at.map_or(self.options.poll, |at| {
                        (at - now).to_std().unwrap_or_default()
                    });
                    until.min(self.options.poll)
                }
                Err(e) => {
                    tracing::warn!(target: "cairn::alerts", error = %e, "alert outbox step failed; retrying");
                    book = None;
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let _ = self.store.release_lease(LEASE, &self.options.holder).await;
    }

    /// One step (see the module's doc); returns when the next step is due at the latest.
    async fn step(
        &self,
        book: &mut Option<Book>,
        now: DateTime<Utc>,
    ) -> cairn_store::Result<Option<DateTime<Utc>>> {
        let ttl = (self.options.poll * 10).max(Duration::from_secs(30));
        let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or_default();
        // Renewed when half of it is left: a write every ~15 s, not every step.
        let renew = book
            .as_ref()
            .is_none_or(|b| b.lease_until - now < ttl_chrono / 2);
        if renew
            && !self
                .store
                .try_lease(LEASE, &self.options.holder, now, ttl)
                .await?
        {
            // Another process sends; whatever it changes is read afresh on takeover.
            *book = None;
            return Ok(None);
        }
        let book = match book {
            Some(book) => book,
            None => book.insert(self.load(now).await?),
        };
        if renew {
            book.lease_until = now + ttl_chrono;
        }
        let more = self.read_facts(book, now).await?;
        let wake_at = self.deliver(book, now).await?;
        Ok(if more { Some(now) } else { wake_at })
    }

    async fn load(&self, now: DateTime<Utc>) -> cairn_store::Result<Book> {
        let keep = chrono::Duration::from_std(self.options.keep_closed).unwrap_or_default();
        let stored = self.store.alert_incidents(now - keep).await?;
        let tracked: Vec<Tracked> = stored.into_iter().filter_map(tracked).collect();
        let attempts = self
            .store
            .alert_deliveries_since(now - keep)
            .await?
            .into_iter()
            .filter_map(attempt)
            .collect();
        let cursor = match self.store.get_meta(ALERTS_CURSOR).await? {
            Some(raw) => raw.parse().unwrap_or(0),
            None => {
                // A store that never had an outbox: what happened before is history, not
                // news; alert from here on.
                let last = self.store.last_event_id().await?;
                self.store
                    .apply_outbox(&OutboxWrite {
                        cursor: Some(last),
                        ..Default::default()
                    })
                    .await?;
                last
            }
        };
        Ok(Book {
            incidents: IncidentBook::restore(tracked),
            attempts,
            cursor,
            lease_until: now,
            watching_since: now,
        })
    }

    /// Step 1: facts into incidents, committed with the cursor. True when there may be
    /// more facts to read at once.
    async fn read_facts(&self, book: &mut Book, now: DateTime<Utc>) -> cairn_store::Result<bool> {
        let events = self
            .store
            .events(&EventFilter {
                kinds: FACT_KINDS.to_vec(),
                after_id: Some(book.cursor),
                limit: BATCH,
                ..Default::default()
            })
            .await?;
        let graph = self.reconciler.graph().borrow().clone();
        let mut changed = BTreeSet::new();
        let mut write = OutboxWrite::default();
        for e in &events {
            if let Some(fact) = self.fact_of(&graph, e).await? {
                apply(&mut book.incidents, fact, &mut changed);
            }
        }
        if let Some(last) = events.last() {
            write.cursor = Some(last.id);
        }
        self.check_stall(book, now, &mut write, &mut changed)
            .await?;
        write.incidents = stored_incidents(&book.incidents, &changed);
        self.store.apply_outbox(&write).await?;
        if let Some(cursor) = write.cursor {
            book.cursor = cursor;
        }
        Ok(events.len() == BATCH as usize)
    }

    /// What a log event means for incidents, if anything.
    async fn fact_of(&self, graph: &AssetGraph, e: &Event) -> cairn_store::Result<Option<Fact>> {
        let asset = e.asset.as_deref().and_then(|k| Some((k, graph.id_of(k)?)));
        Ok(match (e.kind, asset) {
            (EventKind::RetriesExhausted, Some((key, id))) => {
                let subject = self.subject(graph, key, id, &e.partition).await;
                let mut incident = Incident::new(AlertEvent::RunFailed, subject, e.id, e.at);
                let failure = e.payload.get("failure_event_id").and_then(|v| v.as_i64());
                if let Some(run) = self.failed_run(failure).await? {
                    // Run errors are stored masked; `with_error` drops them for
                    // protected assets whatever they say.
                    if let Some(error) = &run.error {
                        incident = incident.with_error(MaskedText::already_masked(error.clone()));
                    }
                    incident = incident.with_run(run.id);
                }
                let targets = targets(&self.config, AlertEvent::RunFailed, Some(id));
                Some(Fact::Fire(incident, targets))
            }
            (EventKind::Materialization, Some((key, id))) => {
                let subject = self.subject(graph, key, id, &e.partition).await;
                Some(Fact::Clear(
                    Condition::of(AlertEvent::RunFailed, subject),
                    e.at,
                ))
            }
            (EventKind::FreshnessChanged, Some((key, id))) => {
                let subject = self.subject(graph, key, id, "").await;
                let event = match e.payload.get("to").and_then(|v| v.as_str()) {
                    Some("warn") => Some(AlertEvent::FreshnessWarn),
                    Some("breach") => Some(AlertEvent::FreshnessBreach),
                    _ => None,
                };
                Some(match event {
                    Some(event) => Fact::Fire(
                        Incident::new(event, subject, e.id, e.at),
                        targets(&self.config, event, Some(id)),
                    ),
                    None => Fact::Clear(Condition::of(AlertEvent::FreshnessWarn, subject), e.at),
                })
            }
            (EventKind::BackfillCompleted, _) => {
                let Some(backfill) = e.payload.get("backfill_id").and_then(|v| v.as_str()) else {
                    return Ok(None);
                };
                let progress: cairn_store::BackfillProgress = e
                    .payload
                    .get("progress")
                    .and_then(|p| serde_json::from_value(p.clone()).ok())
                    .unwrap_or_default();
                let event = if progress.sum(|p| p.failed) > 0 {
                    AlertEvent::BackfillFailed
                } else {
                    AlertEvent::BackfillFinished
                };
                let subject = Subject::Backfill {
                    id: backfill.to_owned(),
                };
                Some(Fact::Fire(
                    Incident::new(event, subject, e.id, e.at),
                    targets(&self.config, event, None),
                ))
            }
            (EventKind::BackfillCanceled, _) => {
                let Some(backfill) = e.payload.get("backfill_id").and_then(|v| v.as_str()) else {
                    return Ok(None);
                };
                let subject = Subject::Backfill {
                    id: backfill.to_owned(),
                };
                Some(Fact::Clear(
                    Condition::of(AlertEvent::BackfillFailed, subject),
                    e.at,
                ))
            }
            _ => None,
        })
    }

    /// The subject of an asset partition; the partition's position (what a masked key
    /// shows) comes from the reconciler's view, which knows dynamic partitions.
    async fn subject(
        &self,
        graph: &AssetGraph,
        key: &str,
        id: cairn_model::AssetId,
        partition: &str,
    ) -> Subject {
        let def = graph.asset(id);
        let sensitive = def
            .partitions
            .as_ref()
            .is_some_and(|p| p.def.has_sensitive_keys());
        let position = if sensitive && !partition.is_empty() {
            let view = self.reconciler.view().read().await;
            view.as_ref().and_then(|v| {
                let engine = &v.engine;
                let id = engine.graph().id_of(key)?;
                cairn_engine::partition_index(engine.graph(), id, partition, engine.env(v.as_of))
            })
        } else {
            None
        };
        Subject::asset(
            def,
            Some(PartitionRef {
                key: partition,
                position,
            }),
        )
    }

    /// The run whose failure exhausted the retries.
    async fn failed_run(
        &self,
        failure: Option<i64>,
    ) -> cairn_store::Result<Option<cairn_store::Run>> {
        let Some(failure) = failure else {
            return Ok(None);
        };
        let events = self.store.events_after(failure - 1, 1).await?;
        let Some(run_id) = events
            .into_iter()
            .find(|e| e.id == failure)
            .and_then(|e| e.run_id)
        else {
            return Ok(None);
        };
        match self.store.get_run(&run_id).await {
            Ok(run) => Ok(Some(run)),
            Err(cairn_store::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `reconciler_stalled`: the reconciler's lease expired `stalled_after` ago or more
    /// (nobody renews it: the loop is stuck, or the store refuses its writes); cleared
    /// when it is renewed. A released lease (a clean stop) is no stall.
    async fn check_stall(
        &self,
        book: &mut Book,
        now: DateTime<Utc>,
        write: &mut OutboxWrite,
        changed: &mut BTreeSet<IncidentKey>,
    ) -> cairn_store::Result<()> {
        let grace = chrono::Duration::from_std(self.options.stalled_after).unwrap_or_default();
        let lease = self.store.lease("reconciler").await?;
        let condition = Condition::of(AlertEvent::ReconcilerStalled, Subject::Reconciler);
        let open = book.incidents.open_incident(&condition).is_some();
        let stalled = now - book.watching_since >= grace
            && lease.as_ref().is_some_and(|l| now - l.expires_at >= grace);
        if stalled && !open {
            let lease = lease.expect("stalled has a lease");
            let origin = lease.expires_at.timestamp_micros();
            let incident = Incident::new(
                AlertEvent::ReconcilerStalled,
                Subject::Reconciler,
                origin,
                now,
            );
            write
                .events
                .push(NewEvent::new(now, EventKind::ReconcilerStalled).payload(
                    serde_json::json!({
                        "holder": lease.holder,
                        "lease_expired_at": lease.expires_at,
                    }),
                ));
            let routes = targets(&self.config, AlertEvent::ReconcilerStalled, None);
            apply(&mut book.incidents, Fact::Fire(incident, routes), changed);
        } else if open && lease.as_ref().is_none_or(|l| l.expires_at > now) {
            write
                .events
                .push(NewEvent::new(now, EventKind::ReconcilerResumed));
            apply(&mut book.incidents, Fact::Clear(condition, now), changed);
        }
        Ok(())
    }

    /// Step 2: plan, record give-ups and holds, send what is owed, record each outcome.
    async fn deliver(
        &self,
        book: &mut Book,
        now: DateTime<Utc>,
    ) -> cairn_store::Result<Option<DateTime<Utc>>> {
        let limits = limits(&self.config);
        let plan = policy::plan(&policy::OutboxInput {
            incidents: book.incidents.incidents(),
            attempts: &book.attempts,
            limits: &limits,
            retry: self.options.retry,
            now,
        });
        let mut write = OutboxWrite::default();
        let mut changed = BTreeSet::new();
        for sendable in plan.give_up {
            let channel = sendable.channel().to_owned();
            tracing::warn!(target: "cairn::alerts", %channel, "giving up on an alert message");
            record(book, &mut write, sendable, now, Outcome::GaveUp, None);
            let failing = Subject::Channel { name: channel };
            let incident = Incident::new(
                AlertEvent::DeliveryFailing,
                failing,
                now.timestamp_micros(),
                now,
            );
            let routes = targets(&self.config, AlertEvent::DeliveryFailing, None);
            apply(
                &mut book.incidents,
                Fact::Fire(incident, routes),
                &mut changed,
            );
        }
        for id in plan.hold {
            record(
                book,
                &mut write,
                Sendable::Alert(id),
                now,
                Outcome::HeldBack,
                None,
            );
        }
        write.incidents = stored_incidents(&book.incidents, &changed);
        self.store.apply_outbox(&write).await?;

        let by_key: HashMap<&IncidentKey, &Tracked> = book
            .incidents
            .incidents()
            .iter()
            .map(|t| (t.incident.key(), t))
            .collect();
        let mut sends: Vec<(Sendable, render::Rendered)> = Vec::new();
        for id in plan.alerts {
            let (Some(tracked), Some(channel)) =
                (by_key.get(&id.incident), self.channels.get(&id.channel))
            else {
                continue;
            };
            let key = id.idempotency_key();
            let rendered = render::render(
                &AlertMessage {
                    incident: &tracked.incident,
                    phase: id.phase,
                    resolved_at: tracked.closed_at,
                    idempotency_key: &key,
                    base_url: self.options.base_url.as_deref(),
                },
                channel.format(),
            );
            sends.push((Sendable::Alert(id), rendered));
        }
        for digest in plan.digests {
            let Sendable::Digest {
                channel,
                key,
                items,
            } = &digest
            else {
                continue;
            };
            let Some(ch) = self.channels.get(channel) else {
                continue;
            };
            let items: Vec<(&Incident, Phase)> = items
                .iter()
                .filter_map(|d| Some((&by_key.get(&d.incident)?.incident, d.phase)))
                .collect();
            let rendered = render::render_digest(
                &DigestMessage {
                    channel,
                    items,
                    max_per_hour: self.config.channels[channel].max_per_hour,
                    idempotency_key: key,
                    at: now,
                    base_url: self.options.base_url.as_deref(),
                },
                ch.format(),
            );
            sends.push((digest.clone(), rendered));
        }
        drop(by_key);

        for (sendable, rendered) in sends {
            let channel = &self.channels[sendable.channel()];
            let outcome = send(
                channel.as_ref(),
                &rendered,
                self.config.channels[sendable.channel()].timeout,
            )
            .await;
            let at = self.clock.now();
            let mut write = OutboxWrite::default();
            let mut changed = BTreeSet::new();
            let (outcome, error) = match outcome {
                Ok(()) => {
                    let failing = Condition::of(
                        AlertEvent::DeliveryFailing,
                        Subject::Channel {
                            name: sendable.channel().to_owned(),
                        },
                    );
                    apply(&mut book.incidents, Fact::Clear(failing, at), &mut changed);
                    (Outcome::Delivered, None)
                }
                Err((outcome, error)) => {
                    tracing::warn!(target: "cairn::alerts", channel = sendable.channel(), %error, "alert delivery failed");
                    (outcome, Some(error))
                }
            };
            record(book, &mut write, sendable, at, outcome, error);
            write.incidents = stored_incidents(&book.incidents, &changed);
            self.store.apply_outbox(&write).await?;
        }
        Ok(plan.wake_at)
    }
}

/// Sends one message within the channel's timeout (the transports have their own; this
/// one bounds everything else).
async fn send(
    channel: &dyn Channel,
    rendered: &render::Rendered,
    timeout: Duration,
) -> Result<(), (Outcome, String)> {
    match tokio::time::timeout(timeout + Duration::from_secs(5), channel.deliver(rendered)).await {
        Ok(Ok(_receipt)) => Ok(()),
        Ok(Err(e)) => Err((e.outcome(), e.to_string())),
        Err(_) => Err((
            Outcome::Retryable,
            format!("no answer within {}", humantime::format_duration(timeout)),
        )),
    }
}

/// A firing or a clear.
enum Fact {
    Fire(Incident, Vec<policy::Target>),
    Clear(Condition, DateTime<Utc>),
}

fn apply(book: &mut IncidentBook, fact: Fact, changed: &mut BTreeSet<IncidentKey>) {
    let transition = match fact {
        Fact::Fire(incident, targets) => book.fire(incident, targets),
        Fact::Clear(condition, at) => book.clear(&condition, at),
    };
    match transition {
        Transition::Opened(key) | Transition::Resolved(key) => {
            changed.insert(key);
        }
        Transition::Escalated { from, to } => {
            changed.insert(from);
            changed.insert(to);
        }
        Transition::AlreadyOpen(_) | Transition::NothingOpen => {}
    }
}

/// Records an attempt in memory and in `write`.
fn record(
    book: &mut Book,
    write: &mut OutboxWrite,
    what: Sendable,
    at: DateTime<Utc>,
    outcome: Outcome,
    error: Option<String>,
) {
    let (phase, incident, message, items) = match &what {
        Sendable::Alert(id) => (
            id.phase.as_str(),
            Some(id.incident.as_str().to_owned()),
            id.idempotency_key(),
            None,
        ),
        Sendable::Digest { key, items, .. } => (
            "digest",
            None,
            key.clone(),
            Some(serde_json::json!(
                items
                    .iter()
                    .map(|d| (d.incident.as_str(), d.phase.as_str()))
                    .collect::<Vec<_>>()
            )),
        ),
    };
    write.deliveries.push(NewDelivery {
        at,
        channel: what.channel().to_owned(),
        phase: phase.to_owned(),
        incident,
        message,
        outcome: outcome.as_str().to_owned(),
        error,
        items,
    });
    book.attempts.push(AttemptRecord { what, at, outcome });
}

fn stored_incidents(book: &IncidentBook, changed: &BTreeSet<IncidentKey>) -> Vec<StoredIncident> {
    book.incidents()
        .iter()
        .filter(|t| changed.contains(t.incident.key()))
        .map(stored)
        .collect()
}

/// An incident as the store keeps it.
pub fn stored(t: &Tracked) -> StoredIncident {
    let subject = t.incident.subject();
    StoredIncident {
        key: t.incident.key().as_str().to_owned(),
        event: t.incident.event().as_str().to_owned(),
        subject: subject.to_string(),
        asset: subject.asset_key().map(str::to_owned),
        status: t.status.as_str().to_owned(),
        opened_at: t.incident.opened_at(),
        closed_at: t.closed_at,
        incident: serde_json::to_value(&t.incident).expect("plain data"),
        targets: serde_json::to_value(&t.targets).expect("plain data"),
    }
}

/// A stored incident back in the book's terms (None: a row this version cannot read).
fn tracked(s: StoredIncident) -> Option<Tracked> {
    Some(Tracked {
        incident: serde_json::from_value(s.incident).ok()?,
        status: IncidentStatus::parse(&s.status)?,
        closed_at: s.closed_at,
        targets: serde_json::from_value(s.targets).ok()?,
    })
}

/// A stored attempt in the policy's terms (None: a test message, or unreadable).
fn attempt(d: Delivery) -> Option<AttemptRecord> {
    let a = d.attempt;
    let outcome = Outcome::parse(&a.outcome)?;
    let what = match a.phase.as_str() {
        "digest" => {
            let items: Vec<(String, String)> = serde_json::from_value(a.items?).ok()?;
            Sendable::Digest {
                items: items
                    .into_iter()
                    .filter_map(|(incident, phase)| {
                        Some(DeliveryId {
                            incident: IncidentKey::from_stored(incident),
                            channel: a.channel.clone(),
                            phase: Phase::parse(&phase)?,
                        })
                    })
                    .collect(),
                channel: a.channel,
                key: a.message,
            }
        }
        phase => Sendable::Alert(DeliveryId {
            incident: IncidentKey::from_stored(a.incident?),
            channel: a.channel,
            phase: Phase::parse(phase)?,
        }),
    };
    Some(AttemptRecord {
        what,
        at: a.at,
        outcome,
    })
}
