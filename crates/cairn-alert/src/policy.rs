//! The delivery policy, pure: no IO, no clock, no randomness of its own.
//!
//! Two parts, both fed by what the store will persist (docs/alerts.md, "Not yet wired"):
//! - [`IncidentBook`]: the incident lifecycle. The first firing of a condition opens an
//!   incident; firings while it is open are the same incident (no repeat); the clear
//!   resolves it once; a freshness breach while a warn is open supersedes the warn.
//!   Rebuilt by replaying the alert-worthy events of the log in order.
//! - [`plan`]: from the incidents, every delivery attempt recorded so far, and `now`, what
//!   to send now, what to hold back, what to give up on, and when to look again. Sending
//!   what it says and recording each outcome, then planning again, converges: a delivered
//!   message is never planned again (its idempotency key is recorded), so a crash between
//!   sending and recording can repeat at most that one message, and receivers may
//!   deduplicate it by its key (`Idempotency-Key` header, email `Message-ID`).
//!
//! Rate limits are per channel over a sliding hour: alerts may fill all but one of the
//! hour's `max_per_hour` slots; the last is kept for a digest that summarizes everything
//! held back, so a flood yields at most `max_per_hour` messages an hour and the people on
//! call still hear, at once, that alerts are being held back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use cairn_model::alerts::{AlertConfig, AlertEvent};

use crate::incident::{Condition, Incident, IncidentKey, Phase, Subject};

/// The window of a rate limit.
pub const RATE_WINDOW: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------
// Incident lifecycle.

/// Where an incident is in its life. One table: [`IncidentStatus::can_become`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentStatus {
    Open,
    /// Cleared: a resolve message is owed to channels whose rule asks for one.
    Resolved,
    /// Replaced by a more severe incident of the same condition (warn by breach): no
    /// resolve message, the new incident carries on.
    Superseded,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Superseded => "superseded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub const ALL: [IncidentStatus; 3] = [
        IncidentStatus::Open,
        IncidentStatus::Resolved,
        IncidentStatus::Superseded,
    ];

    pub fn can_become(self, next: IncidentStatus) -> bool {
        use IncidentStatus::*;
        matches!((self, next), (Open, Resolved) | (Open, Superseded))
    }
}

/// A channel an incident is routed to, and whether that route wants the resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub channel: String,
    pub resolve: bool,
}

/// The targets of an event per the rules (each channel once; see [`AlertConfig::routes`]).
/// The rules are evaluated when the incident opens: a rule changed later does not
/// re-route an incident already open.
pub fn targets(
    config: &AlertConfig,
    event: AlertEvent,
    asset: Option<cairn_model::AssetId>,
) -> Vec<Target> {
    config
        .routes(event, asset)
        .into_iter()
        .map(|r| Target {
            channel: r.channel.name.clone(),
            resolve: r.rule.resolve && event.has_resolution(),
        })
        .collect()
}

/// Each channel's `max_per_hour`, as [`OutboxInput::limits`] wants it.
pub fn limits(config: &AlertConfig) -> BTreeMap<String, u32> {
    config
        .channels
        .iter()
        .map(|(name, c)| (name.clone(), c.max_per_hour))
        .collect()
}

/// An incident and its life so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub incident: Incident,
    pub status: IncidentStatus,
    pub closed_at: Option<DateTime<Utc>>,
    pub targets: Vec<Target>,
}

/// What applying a firing or a clear did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Opened(IncidentKey),
    /// The condition already has an open incident: nothing new is sent.
    AlreadyOpen(IncidentKey),
    /// A more severe firing replaced the open incident.
    Escalated {
        from: IncidentKey,
        to: IncidentKey,
    },
    Resolved(IncidentKey),
    /// A clear with no open incident: nothing to do.
    NothingOpen,
}

/// Every incident, and the open one of each condition.
#[derive(Debug, Clone, Default)]
pub struct IncidentBook {
    incidents: Vec<Tracked>,
    open: BTreeMap<Condition, usize>,
}

impl IncidentBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// The book as stored: incidents in the order they opened (an open one per
    /// condition; should the store hold two, the later one counts).
    pub fn restore(incidents: Vec<Tracked>) -> Self {
        let mut book = Self {
            incidents,
            open: BTreeMap::new(),
        };
        for (i, tracked) in book.incidents.iter().enumerate() {
            if tracked.status == IncidentStatus::Open {
                book.open.insert(tracked.incident.condition(), i);
            }
        }
        book
    }

    pub fn incidents(&self) -> &[Tracked] {
        &self.incidents
    }

    /// Whether `condition` has an open incident.
    pub fn open_incident(&self, condition: &Condition) -> Option<&Tracked> {
        self.open.get(condition).map(|&i| &self.incidents[i])
    }

    /// A firing. `targets` are used only if it opens an incident. An event that has no
    /// resolution (a backfill finishing) is news: it never stays open.
    pub fn fire(&mut self, incident: Incident, targets: Vec<Target>) -> Transition {
        let condition = incident.condition();
        let at = incident.opened_at();
        let key = incident.key().clone();
        let mut escalated_from = None;
        if let Some(&i) = self.open.get(&condition) {
            let current = &self.incidents[i];
            if incident.severity() <= current.incident.severity() {
                return Transition::AlreadyOpen(current.incident.key().clone());
            }
            escalated_from = Some(current.incident.key().clone());
            self.close(i, IncidentStatus::Superseded, at);
        }
        let lasting = incident.event().has_resolution();
        self.incidents.push(Tracked {
            incident,
            status: IncidentStatus::Open,
            closed_at: None,
            targets,
        });
        let index = self.incidents.len() - 1;
        if lasting {
            self.open.insert(condition, index);
        } else {
            // News is resolved as it happens, silently: targets never ask for its resolve.
            self.incidents[index].status = IncidentStatus::Resolved;
            self.incidents[index].closed_at = Some(at);
        }
        match escalated_from {
            Some(from) => Transition::Escalated { from, to: key },
            None => Transition::Opened(key),
        }
    }

    /// The condition cleared (a materialization, fresh again...).
    pub fn clear(&mut self, condition: &Condition, at: DateTime<Utc>) -> Transition {
        match self.open.get(condition) {
            Some(&i) => {
                self.close(i, IncidentStatus::Resolved, at);
                Transition::Resolved(self.incidents[i].incident.key().clone())
            }
            None => Transition::NothingOpen,
        }
    }

    fn close(&mut self, i: usize, status: IncidentStatus, at: DateTime<Utc>) {
        let tracked = &mut self.incidents[i];
        debug_assert!(tracked.status.can_become(status));
        tracked.status = status;
        tracked.closed_at = Some(at);
        self.open.remove(&tracked.incident.condition());
    }
}

// ---------------------------------------------------------------------------------------
// Deliveries and their records.

/// One message the outbox owes: an incident's firing or resolve, to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    pub incident: IncidentKey,
    pub channel: String,
    pub phase: Phase,
}

impl DeliveryId {
    /// Unique per incident, channel and phase, stable across restarts.
    pub fn idempotency_key(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.incident.as_str());
        hash.update([0]);
        hash.update(&self.channel);
        hash.update([0]);
        hash.update(self.phase.as_str());
        format!("alert-{}", &hex::encode(hash.finalize())[..24])
    }
}

/// What was attempted: one alert, or a digest of held-back alerts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sendable {
    Alert(DeliveryId),
    Digest {
        channel: String,
        key: String,
        items: Vec<DeliveryId>,
    },
}

impl Sendable {
    pub fn channel(&self) -> &str {
        match self {
            Sendable::Alert(d) => &d.channel,
            Sendable::Digest { channel, .. } => channel,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Delivered,
    /// Failed, may succeed later (timeouts, 429, 5xx, SMTP 4xx).
    Retryable,
    /// Failed for good (4xx, SMTP 5xx, a missing secret): not retried.
    Permanent,
    /// Over the rate limit: goes into the channel's next digest.
    HeldBack,
    /// Given up (after a permanent failure or too many attempts); recorded once.
    GaveUp,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Delivered,
        Outcome::Retryable,
        Outcome::Permanent,
        Outcome::HeldBack,
        Outcome::GaveUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retryable => "retryable",
            Outcome::Permanent => "permanent",
            Outcome::HeldBack => "held_back",
            Outcome::GaveUp => "gave_up",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == raw)
    }
}

/// One recorded attempt (or hold, or give-up).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptRecord {
    pub what: Sendable,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// Retries: exponential backoff with full jitter, at most `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The ceiling of the first retry's delay; doubles with each failure.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
    pub max_attempts: u32,
    /// Seeds the jitter. The jitter of an attempt is a function of the seed, the message's
    /// idempotency key and the attempt number, so a replayed plan waits exactly as the
    /// original did, and messages failing together spread out.
    pub seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(30 * 60),
            max_attempts: 8,
            seed: 0x00c0_ffee,
        }
    }
}

impl RetryPolicy {
    /// The ceiling after `failures` failures (>= 1): `base * 2^(failures-1)`, at most `cap`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The wait before the next attempt after `failures` failures: uniform in
    /// [1s, ceiling] (full jitter; the 1 s floor keeps a failing endpoint from being hit
    /// in a tight loop).
    pub fn delay(&self, key: &str, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        let floor = Duration::from_secs(1).min(ceiling);
        let span_ms = (ceiling - floor).as_millis() as u64;
        let r = splitmix64(self.seed ^ fnv1a(key) ^ u64::from(failures).rotate_left(32));
        floor + Duration::from_millis(if span_ms == 0 { 0 } else { r % (span_ms + 1) })
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

// ---------------------------------------------------------------------------------------
// The plan.

pub struct OutboxInput<'a> {
    pub incidents: &'a [Tracked],
    pub attempts: &'a [AttemptRecord],
    /// `max_per_hour` per channel; a channel missing here (removed from alerts.toml) is
    /// not sent to.
    pub limits: &'a BTreeMap<String, u32>,
    pub retry: RetryPolicy,
    pub now: DateTime<Utc>,
}

/// What to do now. The caller sends `alerts` and `digests`, records each outcome, records
/// `hold` as [`Outcome::HeldBack`] and `give_up` as [`Outcome::GaveUp`] (and may fire a
/// `delivery_failing` incident about the channel). It plans again at once after a plan
/// that did anything (a firing delivered can make the resolve of an incident that
/// already cleared due; this settles within a round or two, property-tested), else at
/// `wake_at` or when something new happens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxPlan {
    pub alerts: Vec<DeliveryId>,
    pub hold: Vec<DeliveryId>,
    pub digests: Vec<Sendable>,
    pub give_up: Vec<Sendable>,
    pub wake_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct History {
    delivered: bool,
    failures: u32,
    last_failure: Option<DateTime<Utc>>,
    permanent: bool,
    held: bool,
    gave_up: bool,
}

impl History {
    fn add(&mut self, at: DateTime<Utc>, outcome: Outcome) {
        match outcome {
            Outcome::Delivered => self.delivered = true,
            Outcome::Retryable => {
                self.failures += 1;
                self.last_failure = self.last_failure.max(Some(at));
            }
            Outcome::Permanent => {
                self.failures += 1;
                self.permanent = true;
            }
            Outcome::HeldBack => self.held = true,
            Outcome::GaveUp => self.gave_up = true,
        }
    }
}

/// When the next attempt of something with `history` may start (None: now).
fn retry_due(history: &History, key: &str, retry: &RetryPolicy) -> Option<DateTime<Utc>> {
    let last = history.last_failure?;
    let delay = chrono::Duration::from_std(retry.delay(key, history.failures)).ok()?;
    Some(last + delay)
}

fn gives_up(history: &History, retry: &RetryPolicy) -> bool {
    history.permanent || history.failures >= retry.max_attempts
}

pub fn plan(input: &OutboxInput<'_>) -> OutboxPlan {
    let now = input.now;
    let window_start = now - chrono::Duration::from_std(RATE_WINDOW).expect("an hour");
    let mut alerts: BTreeMap<&DeliveryId, History> = BTreeMap::new();
    let mut digests: BTreeMap<&str, (&Sendable, History)> = BTreeMap::new();
    let mut digested: BTreeSet<&DeliveryId> = BTreeSet::new();
    // Sends that count against each channel's window: delivered alerts and digests.
    let mut sent: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
    for record in input.attempts {
        match &record.what {
            Sendable::Alert(id) => alerts.entry(id).or_default().add(record.at, record.outcome),
            Sendable::Digest { key, items, .. } => {
                digests
                    .entry(key)
                    .or_insert_with(|| (&record.what, History::default()))
                    .1
                    .add(record.at, record.outcome);
                if record.outcome == Outcome::Delivered {
                    digested.extend(items.iter());
                }
            }
        }
        if record.outcome == Outcome::Delivered && record.at > window_start {
            sent.entry(record.what.channel())
                .or_default()
                .push(record.at);
        }
    }

    let mut out = OutboxPlan::default();
    let mut wake: Vec<DateTime<Utc>> = Vec::new();
    // Per channel: candidates to send now, and held-back alerts awaiting a digest.
    let mut candidates: BTreeMap<&str, Vec<DeliveryId>> = BTreeMap::new();
    let mut held: BTreeMap<&str, Vec<DeliveryId>> = BTreeMap::new();
    let empty = History::default();

    let mut order: Vec<&Tracked> = input.incidents.iter().collect();
    order.sort_by(|a, b| {
        (a.incident.opened_at(), a.incident.key()).cmp(&(b.incident.opened_at(), b.incident.key()))
    });
    for tracked in order {
        let incident = &tracked.incident;
        for target in &tracked.targets {
            let Some((channel, _)) = input.limits.get_key_value(&target.channel) else {
                continue;
            };
            // A channel's own delivery trouble is reported elsewhere, never to itself.
            if matches!(incident.subject(), Subject::Channel { name } if name == channel) {
                continue;
            }
            let firing = DeliveryId {
                incident: incident.key().clone(),
                channel: channel.clone(),
                phase: Phase::Firing,
            };
            let firing_history = alerts.get(&firing).unwrap_or(&empty);
            let firing_reached = firing_history.delivered || digested.contains(&firing);
            // A superseded incident (a warn that became a breach) whose firing was never
            // attempted is not sent: the breach says more.
            let stale = tracked.status == IncidentStatus::Superseded
                && !alerts.contains_key(&firing)
                && !digested.contains(&firing);
            let mut owed = if stale { Vec::new() } else { vec![firing] };
            // A resolve follows a firing that reached someone; one that never did needs
            // no "all clear". News (a backfill finished) has nothing to resolve.
            if tracked.status == IncidentStatus::Resolved
                && target.resolve
                && incident.event().has_resolution()
                && firing_reached
            {
                owed.push(DeliveryId {
                    incident: incident.key().clone(),
                    channel: channel.clone(),
                    phase: Phase::Resolved,
                });
            }
            for id in owed {
                let history = alerts.get(&id).unwrap_or(&empty);
                if history.delivered || digested.contains(&id) || history.gave_up {
                    continue;
                }
                if gives_up(history, &input.retry) {
                    out.give_up.push(Sendable::Alert(id));
                    continue;
                }
                if history.held {
                    held.entry(channel).or_default().push(id);
                    continue;
                }
                match retry_due(history, &id.idempotency_key(), &input.retry) {
                    Some(due) if due > now => wake.push(due),
                    _ => candidates.entry(channel).or_default().push(id),
                }
            }
        }
    }

    for (channel, &max) in input.limits {
        let channel = channel.as_str();
        let mut times = sent.remove(channel).unwrap_or_default();
        times.sort();
        let mut used = times.len() as u32;
        for id in candidates.remove(channel).unwrap_or_default() {
            // All but the last slot; the last is the digest's.
            if used + 1 < max {
                used += 1;
                out.alerts.push(id);
            } else {
                out.hold.push(id.clone());
                held.entry(channel).or_default().push(id);
            }
        }
        let items = held.remove(channel).unwrap_or_default();
        if items.is_empty() {
            continue;
        }
        let key = digest_key(channel, &items);
        let history = digests.get(key.as_str()).map(|(_, h)| h).unwrap_or(&empty);
        if history.gave_up {
            continue;
        }
        if gives_up(history, &input.retry) {
            out.give_up.push(Sendable::Digest {
                channel: channel.to_owned(),
                key,
                items,
            });
            continue;
        }
        let due = retry_due(history, &key, &input.retry);
        if let Some(due) = due.filter(|d| *d > now) {
            wake.push(due);
        } else if used < max {
            out.digests.push(Sendable::Digest {
                channel: channel.to_owned(),
                key,
                items,
            });
        } else if let Some(&oldest) = times.first() {
            // The window is full: look again when its oldest send leaves it.
            wake.push(oldest + chrono::Duration::from_std(RATE_WINDOW).expect("an hour"));
        }
    }
    out.wake_at = wake.into_iter().min();
    out
}

/// A digest's key: its channel and exactly the alerts it summarizes.
fn digest_key(channel: &str, items: &[DeliveryId]) -> String {
    let mut hash = Sha256::new();
    hash.update(channel);
    let mut keys: Vec<String> = items.iter().map(DeliveryId::idempotency_key).collect();
    keys.sort();
    for k in keys {
        hash.update([0]);
        hash.update(k);
    }
    format!("digest-{}", &hex::encode(hash.finalize())[..24])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Subject;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minutes)
    }

    fn stalled(origin: i64, at: DateTime<Utc>) -> Incident {
        Incident::new(
            AlertEvent::ReconcilerStalled,
            Subject::Reconciler,
            origin,
            at,
        )
    }

    fn to(channel: &str) -> Vec<Target> {
        vec![Target {
            channel: channel.into(),
            resolve: true,
        }]
    }

    #[test]
    fn the_lifecycle_table_is_exhaustive() {
        use IncidentStatus::*;
        let mut allowed = Vec::new();
        for a in IncidentStatus::ALL {
            for b in IncidentStatus::ALL {
                if a.can_become(b) {
                    allowed.push((a, b));
                }
            }
        }
        assert_eq!(allowed, [(Open, Resolved), (Open, Superseded)]);
    }

    #[test]
    fn an_incident_opens_once_and_resolves_once() {
        let mut book = IncidentBook::new();
        let first = stalled(1, t(0));
        let condition = first.condition();
        let key = first.key().clone();
        assert_eq!(book.fire(first, to("c")), Transition::Opened(key.clone()));
        assert_eq!(
            book.fire(stalled(2, t(5)), to("c")),
            Transition::AlreadyOpen(key.clone())
        );
        assert_eq!(book.clear(&condition, t(9)), Transition::Resolved(key));
        assert_eq!(book.clear(&condition, t(10)), Transition::NothingOpen);
        assert_eq!(book.incidents().len(), 1);
        assert!(matches!(
            book.fire(stalled(3, t(11)), to("c")),
            Transition::Opened(_)
        ));
    }

    #[test]
    fn a_breach_supersedes_a_warn_and_a_warn_does_not_repeat_a_breach() {
        let subject = Subject::Backfill { id: "x".into() };
        let warn = Incident::new(AlertEvent::FreshnessWarn, subject.clone(), 1, t(0));
        let breach = Incident::new(AlertEvent::FreshnessBreach, subject.clone(), 2, t(5));
        let mut book = IncidentBook::new();
        book.fire(warn.clone(), to("c"));
        assert!(matches!(
            book.fire(breach.clone(), to("c")),
            Transition::Escalated { .. }
        ));
        assert_eq!(book.incidents()[0].status, IncidentStatus::Superseded);
        let again = Incident::new(AlertEvent::FreshnessWarn, subject, 3, t(6));
        assert!(matches!(
            book.fire(again, to("c")),
            Transition::AlreadyOpen(_)
        ));
    }

    fn limits(max: u32) -> BTreeMap<String, u32> {
        [("c".to_owned(), max)].into()
    }

    fn input<'a>(
        incidents: &'a [Tracked],
        attempts: &'a [AttemptRecord],
        limits: &'a BTreeMap<String, u32>,
        now: DateTime<Utc>,
    ) -> OutboxInput<'a> {
        OutboxInput {
            incidents,
            attempts,
            limits,
            retry: RetryPolicy::default(),
            now,
        }
    }

    fn record(what: Sendable, at: DateTime<Utc>, outcome: Outcome) -> AttemptRecord {
        AttemptRecord { what, at, outcome }
    }

    #[test]
    fn firing_then_resolve_each_once() {
        let mut book = IncidentBook::new();
        let i = stalled(1, t(0));
        let condition = i.condition();
        book.fire(i, to("c"));
        let lim = limits(10);
        let p = plan(&input(book.incidents(), &[], &lim, t(0)));
        assert_eq!(p.alerts.len(), 1);
        assert_eq!(p.alerts[0].phase, Phase::Firing);
        let mut log = vec![record(
            Sendable::Alert(p.alerts[0].clone()),
            t(0),
            Outcome::Delivered,
        )];
        assert_eq!(
            plan(&input(book.incidents(), &log, &lim, t(1))),
            OutboxPlan::default()
        );
        book.clear(&condition, t(2));
        let p = plan(&input(book.incidents(), &log, &lim, t(2)));
        assert_eq!(p.alerts.len(), 1);
        assert_eq!(p.alerts[0].phase, Phase::Resolved);
        log.push(record(
            Sendable::Alert(p.alerts[0].clone()),
            t(2),
            Outcome::Delivered,
        ));
        assert_eq!(
            plan(&input(book.incidents(), &log, &lim, t(3))),
            OutboxPlan::default()
        );
    }

    #[test]
    fn retries_back_off_then_give_up() {
        let mut book = IncidentBook::new();
        book.fire(stalled(1, t(0)), to("c"));
        let lim = limits(10);
        let mut log = Vec::new();
        let mut now = t(0);
        let retry = RetryPolicy::default();
        for n in 1..=retry.max_attempts {
            let p = plan(&input(book.incidents(), &log, &lim, now));
            assert_eq!(p.alerts.len(), 1, "attempt {n}");
            log.push(record(
                Sendable::Alert(p.alerts[0].clone()),
                now,
                Outcome::Retryable,
            ));
            let p = plan(&input(book.incidents(), &log, &lim, now));
            if n < retry.max_attempts {
                let wake = p.wake_at.expect("a retry is scheduled");
                assert!(wake > now && p.alerts.is_empty());
                assert!(wake - now <= chrono::Duration::from_std(retry.ceiling(n)).unwrap());
                now = wake;
            } else {
                assert_eq!(p.give_up.len(), 1);
                log.push(record(p.give_up[0].clone(), now, Outcome::GaveUp));
            }
        }
        assert_eq!(
            plan(&input(book.incidents(), &log, &lim, now)),
            OutboxPlan::default()
        );
    }

    #[test]
    fn a_permanent_failure_gives_up_at_once_and_no_resolve_follows() {
        let mut book = IncidentBook::new();
        let i = stalled(1, t(0));
        let condition = i.condition();
        book.fire(i, to("c"));
        let lim = limits(10);
        let p = plan(&input(book.incidents(), &[], &lim, t(0)));
        let mut log = vec![record(
            Sendable::Alert(p.alerts[0].clone()),
            t(0),
            Outcome::Permanent,
        )];
        let p = plan(&input(book.incidents(), &log, &lim, t(0)));
        assert_eq!(p.give_up.len(), 1);
        log.push(record(p.give_up[0].clone(), t(0), Outcome::GaveUp));
        book.clear(&condition, t(1));
        assert_eq!(
            plan(&input(book.incidents(), &log, &lim, t(1))),
            OutboxPlan::default()
        );
    }

    #[test]
    fn over_the_limit_alerts_are_held_and_digested() {
        let mut book = IncidentBook::new();
        for n in 0..6 {
            book.fire(
                Incident::new(
                    AlertEvent::BackfillFailed,
                    Subject::Backfill {
                        id: format!("b{n}"),
                    },
                    n,
                    t(n),
                ),
                to("c"),
            );
        }
        let lim = limits(3);
        let p = plan(&input(book.incidents(), &[], &lim, t(10)));
        assert_eq!(p.alerts.len(), 2, "all but the digest's slot");
        assert_eq!(p.hold.len(), 4);
        assert_eq!(p.digests.len(), 1);
        let Sendable::Digest { items, .. } = &p.digests[0] else {
            panic!()
        };
        assert_eq!(items.len(), 4);
        let mut log: Vec<AttemptRecord> = p
            .alerts
            .iter()
            .map(|a| record(Sendable::Alert(a.clone()), t(10), Outcome::Delivered))
            .chain(
                p.hold
                    .iter()
                    .map(|h| record(Sendable::Alert(h.clone()), t(10), Outcome::HeldBack)),
            )
            .collect();
        log.push(record(p.digests[0].clone(), t(10), Outcome::Delivered));
        assert_eq!(
            plan(&input(book.incidents(), &log, &lim, t(11))),
            OutboxPlan::default()
        );
        // A new alert while the window is full is held, and digested when a slot frees.
        book.fire(stalled(99, t(20)), to("c"));
        let p = plan(&input(book.incidents(), &log, &lim, t(20)));
        assert!(p.alerts.is_empty() && p.digests.is_empty());
        assert_eq!(p.hold.len(), 1);
        assert_eq!(p.wake_at, Some(t(70)));
        log.push(record(
            Sendable::Alert(p.hold[0].clone()),
            t(20),
            Outcome::HeldBack,
        ));
        let p = plan(&input(book.incidents(), &log, &lim, t(70)));
        assert_eq!(p.digests.len(), 1);
    }

    #[test]
    fn a_superseded_warn_not_yet_sent_is_dropped_for_the_breach() {
        let subject = Subject::Backfill { id: "x".into() };
        let mut book = IncidentBook::new();
        book.fire(
            Incident::new(AlertEvent::FreshnessWarn, subject.clone(), 1, t(0)),
            to("c"),
        );
        book.fire(
            Incident::new(AlertEvent::FreshnessBreach, subject, 2, t(0)),
            to("c"),
        );
        let lim = limits(10);
        let p = plan(&input(book.incidents(), &[], &lim, t(0)));
        assert_eq!(p.alerts.len(), 1);
        assert_eq!(&p.alerts[0].incident, book.incidents()[1].incident.key());
    }

    #[test]
    fn news_is_sent_once_and_never_resolved() {
        let mut book = IncidentBook::new();
        let news = Incident::new(
            AlertEvent::BackfillFinished,
            Subject::Backfill { id: "b".into() },
            1,
            t(0),
        );
        // Even a target that asks for resolves gets none for news.
        book.fire(news, to("c"));
        assert_eq!(book.incidents()[0].status, IncidentStatus::Resolved);
        let lim = limits(10);
        let p = plan(&input(book.incidents(), &[], &lim, t(0)));
        assert_eq!(p.alerts.len(), 1);
        let log = [record(
            Sendable::Alert(p.alerts[0].clone()),
            t(0),
            Outcome::Delivered,
        )];
        assert_eq!(
            plan(&input(book.incidents(), &log, &lim, t(1))),
            OutboxPlan::default()
        );
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let r = RetryPolicy::default();
        assert_eq!(r.delay("k", 3), r.delay("k", 3));
        assert!(r.delay("k", 3) <= r.ceiling(3));
        assert!(r.delay("k", 1) >= Duration::from_secs(1));
        assert_eq!(r.ceiling(40), r.cap);
    }
}
