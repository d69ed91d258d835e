//! Properties of the pure delivery policy, over simulated nights: incidents firing and
//! clearing at random minutes, channels that fail at random, time jumping to each
//! wake-up the plan asks for.
//!
//! - no message is delivered twice (per incident, channel and phase);
//! - no channel receives more than its `max_per_hour` in any sliding hour;
//! - a resolve never arrives before its firing reached the channel;
//! - what a plan sent is never planned again at once, and replanning settles (idempotent);
//! - planning is deterministic;
//! - with channels that always work, everything owed arrives (liveness);
//! - backoff delays stay within their ceilings.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use cairn_alert::policy::{self, RetryPolicy};
use cairn_alert::{
    AttemptRecord, DeliveryId, Incident, IncidentBook, IncidentStatus, OutboxInput, OutboxPlan,
    Outcome, Phase, Sendable, Subject, Target,
};
use cairn_model::alerts::AlertEvent;

#[derive(Debug, Clone)]
enum Change {
    Fire {
        event: AlertEvent,
        condition: u8,
        channels: Vec<u8>,
    },
    Clear {
        event: AlertEvent,
        condition: u8,
    },
}

/// Backfill failures, and freshness warn and breach (one condition family: a breach
/// supersedes an open warn).
fn event() -> impl Strategy<Value = AlertEvent> {
    prop_oneof![
        Just(AlertEvent::BackfillFailed),
        Just(AlertEvent::FreshnessWarn),
        Just(AlertEvent::FreshnessBreach),
    ]
}

fn changes() -> impl Strategy<Value = Vec<(u16, Change)>> {
    let change = prop_oneof![
        3 => (event(), 0u8..4, prop::collection::vec(0u8..2, 1..3))
            .prop_map(|(event, condition, channels)| Change::Fire { event, condition, channels }),
        2 => (event(), 0u8..4).prop_map(|(event, condition)| Change::Clear { event, condition }),
    ];
    prop::collection::vec((0u16..240, change), 1..25)
}

fn t0() -> DateTime<Utc> {
    "2025-03-01T00:00:00Z".parse().unwrap()
}

fn subject(condition: u8) -> Subject {
    Subject::Backfill {
        id: format!("b{condition}"),
    }
}

struct World {
    book: IncidentBook,
    log: Vec<AttemptRecord>,
    limits: BTreeMap<String, u32>,
    retry: RetryPolicy,
}

impl World {
    fn input(&self, now: DateTime<Utc>) -> OutboxInput<'_> {
        OutboxInput {
            incidents: self.book.incidents(),
            attempts: &self.log,
            limits: &self.limits,
            retry: self.retry,
            now,
        }
    }

    /// Does what `plan` says, taking each send's outcome from `outcomes`.
    fn execute(
        &mut self,
        plan: &OutboxPlan,
        now: DateTime<Utc>,
        outcomes: &mut impl Iterator<Item = Outcome>,
    ) {
        for id in &plan.alerts {
            let outcome = outcomes.next().unwrap_or(Outcome::Delivered);
            self.record(Sendable::Alert(id.clone()), now, outcome);
        }
        for id in &plan.hold {
            self.record(Sendable::Alert(id.clone()), now, Outcome::HeldBack);
        }
        for digest in &plan.digests {
            let outcome = outcomes.next().unwrap_or(Outcome::Delivered);
            self.record(digest.clone(), now, outcome);
        }
        for what in &plan.give_up {
            self.record(what.clone(), now, Outcome::GaveUp);
        }
    }

    fn record(&mut self, what: Sendable, at: DateTime<Utc>, outcome: Outcome) {
        self.log.push(AttemptRecord { what, at, outcome });
    }

    /// Runs the night: changes applied at their minutes, the outbox planned at every
    /// change and wake-up, until `end`.
    fn run(
        &mut self,
        changes: &[(u16, Change)],
        end: DateTime<Utc>,
        outcomes: &mut impl Iterator<Item = Outcome>,
    ) -> Result<(), TestCaseError> {
        let mut changes: Vec<(u16, Change)> = changes.to_vec();
        changes.sort_by_key(|(m, _)| *m);
        let mut next_change = 0;
        let mut now = t0();
        let mut origin = 0;
        for _ in 0..10_000 {
            while next_change < changes.len()
                && t0() + Duration::minutes(i64::from(changes[next_change].0)) <= now
            {
                origin += 1;
                match &changes[next_change].1 {
                    Change::Fire {
                        event,
                        condition,
                        channels,
                    } => {
                        let targets: BTreeSet<u8> = channels.iter().copied().collect();
                        let incident = Incident::new(*event, subject(*condition), origin, now);
                        self.book.fire(
                            incident,
                            targets
                                .into_iter()
                                .map(|c| Target {
                                    channel: format!("c{c}"),
                                    resolve: true,
                                })
                                .collect(),
                        );
                    }
                    Change::Clear { event, condition } => {
                        let probe = Incident::new(*event, subject(*condition), 0, now);
                        self.book.clear(&probe.condition(), now);
                    }
                }
                next_change += 1;
            }
            // What a plan does can make more due at once (a firing delivered lets the
            // resolve of an incident already cleared follow): the outbox plans again at
            // once after a plan that did anything, and it settles within a few rounds.
            let mut wake_at = None;
            let mut settled = false;
            for _ in 0..6 {
                let plan = policy::plan(&self.input(now));
                prop_assert_eq!(&plan, &policy::plan(&self.input(now)), "deterministic");
                wake_at = plan.wake_at;
                if plan.alerts.is_empty()
                    && plan.hold.is_empty()
                    && plan.digests.is_empty()
                    && plan.give_up.is_empty()
                {
                    settled = true;
                    break;
                }
                self.execute(&plan, now, outcomes);
                let again = policy::plan(&self.input(now));
                for id in &again.alerts {
                    prop_assert!(!plan.alerts.contains(id), "planned again at once: {:?}", id);
                }
                for what in &again.give_up {
                    prop_assert!(!plan.give_up.contains(what), "gave up twice");
                }
            }
            prop_assert!(settled, "the outbox settles at {}", now);
            let change_at = changes
                .get(next_change)
                .map(|(m, _)| t0() + Duration::minutes(i64::from(*m)));
            let next = [wake_at, change_at].into_iter().flatten().min();
            match next {
                Some(n) if n <= end => {
                    prop_assert!(n > now, "time moves forward");
                    now = n;
                }
                _ => return Ok(()),
            }
        }
        Err(TestCaseError::fail("the simulation did not settle"))
    }

    fn check_safety(&self) -> Result<(), TestCaseError> {
        let mut delivered: BTreeSet<&DeliveryId> = BTreeSet::new();
        let mut reached: BTreeSet<&DeliveryId> = BTreeSet::new();
        let mut sends: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
        for r in &self.log {
            if r.outcome != Outcome::Delivered {
                continue;
            }
            sends.entry(r.what.channel()).or_default().push(r.at);
            match &r.what {
                Sendable::Alert(id) => {
                    prop_assert!(delivered.insert(id), "delivered twice: {:?}", id);
                    if id.phase == Phase::Resolved {
                        let firing = DeliveryId {
                            phase: Phase::Firing,
                            ..id.clone()
                        };
                        prop_assert!(reached.contains(&firing), "resolve before its firing");
                    }
                    reached.insert(id);
                }
                Sendable::Digest { items, .. } => {
                    for id in items {
                        prop_assert!(!delivered.contains(id), "digest of a delivered alert");
                        reached.insert(id);
                    }
                }
            }
        }
        for (channel, mut times) in sends {
            times.sort();
            let max = self.limits[channel] as usize;
            for (i, start) in times.iter().enumerate() {
                let in_hour = times[i..]
                    .iter()
                    .take_while(|t| **t < *start + Duration::hours(1))
                    .count();
                prop_assert!(
                    in_hour <= max,
                    "{} sends within an hour on {}",
                    in_hour,
                    channel
                );
            }
        }
        Ok(())
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Delivered),
        3 => Just(Outcome::Retryable),
        1 => Just(Outcome::Permanent),
    ]
}

fn world(max0: u32, max1: u32, seed: u64) -> World {
    World {
        book: IncidentBook::new(),
        log: Vec::new(),
        limits: BTreeMap::from([("c0".to_owned(), max0), ("c1".to_owned(), max1)]),
        retry: RetryPolicy {
            seed,
            ..RetryPolicy::default()
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn deliveries_are_safe_under_failures(
        changes in changes(),
        outcomes in prop::collection::vec(outcome(), 0..200),
        max0 in 2u32..6,
        max1 in 2u32..40,
        seed in any::<u64>(),
    ) {
        let mut w = world(max0, max1, seed);
        let end = t0() + Duration::hours(48);
        w.run(&changes, end, &mut outcomes.into_iter())?;
        w.check_safety()?;
    }

    #[test]
    fn with_working_channels_everything_owed_arrives(
        changes in changes(),
        max0 in 2u32..6,
        max1 in 2u32..40,
    ) {
        let mut w = world(max0, max1, 7);
        let end = t0() + Duration::hours(48);
        w.run(&changes, end, &mut std::iter::repeat(Outcome::Delivered))?;
        w.check_safety()?;
        let mut reached: BTreeSet<DeliveryId> = BTreeSet::new();
        for r in w.log.iter().filter(|r| r.outcome == Outcome::Delivered) {
            match &r.what {
                Sendable::Alert(id) => { reached.insert(id.clone()); }
                Sendable::Digest { items, .. } => reached.extend(items.iter().cloned()),
            }
        }
        for tracked in w.book.incidents() {
            // A warn superseded by a breach before it was sent is dropped for the breach.
            if tracked.status == IncidentStatus::Superseded {
                continue;
            }
            for target in &tracked.targets {
                let id = |phase| DeliveryId {
                    incident: tracked.incident.key().clone(),
                    channel: target.channel.clone(),
                    phase,
                };
                prop_assert!(reached.contains(&id(Phase::Firing)), "firing missing");
                if tracked.status == IncidentStatus::Resolved {
                    prop_assert!(reached.contains(&id(Phase::Resolved)), "resolve missing");
                }
            }
        }
    }

    #[test]
    fn backoff_stays_within_its_ceiling(key in "[a-z0-9-]{1,30}", failures in 1u32..40, seed in any::<u64>()) {
        let r = RetryPolicy { seed, ..RetryPolicy::default() };
        let d = r.delay(&key, failures);
        prop_assert!(d <= r.ceiling(failures));
        prop_assert!(d >= std::time::Duration::from_secs(1));
        prop_assert!(r.ceiling(failures) <= r.cap);
        prop_assert_eq!(d, r.delay(&key, failures));
    }
}
