//! Facts a tick commits for the alert outbox (docs/alerts.md): state changes the plan
//! observed, written as events in the tick's one transaction.
//!
//! - `retries_exhausted`: a partition failed with no retries left. Reported once per
//!   failure: a tick reports failures after the newest event whose facts were committed
//!   (`reconciler.observed_through`, committed with them), so a crash before the commit
//!   reports them again after a restart, and one after it does not.
//! - `freshness_changed`: an asset's freshness status differs from the one last logged
//!   (`reconciler.freshness`, committed with the events). Time alone changes freshness, so
//!   the tick also says when the next change is due and the loop wakes up then.

use std::collections::BTreeMap;

use cairn_model::AssetId;
use cairn_reconcile::Observed;
use cairn_reconcile::freshness::FreshnessStatus;
use cairn_store::{EventId, EventKind, NewEvent, Result, Store};
use chrono::{DateTime, Utc};

use crate::engine::{Engine, partition_key};

/// `cairn_meta`: the newest event whose observed facts are committed.
pub const OBSERVED_THROUGH: &str = "reconciler.observed_through";
/// `cairn_meta`: the freshness status last logged per asset key (JSON object).
pub const FRESHNESS_LOGGED: &str = "reconciler.freshness";

/// What the log says the reconciler already reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logged {
    /// None: nothing was ever reported (a new store, or one from before facts were
    /// logged): history is not reported, only what comes next.
    pub observed_through: Option<EventId>,
    pub freshness: BTreeMap<String, FreshnessStatus>,
}

impl Logged {
    pub async fn read(store: &Store) -> Result<Self> {
        let observed_through = store
            .get_meta(OBSERVED_THROUGH)
            .await?
            .and_then(|v| v.parse().ok());
        let freshness = store
            .get_meta(FRESHNESS_LOGGED)
            .await?
            .map(|v| decode_freshness(&v))
            .unwrap_or_default();
        Ok(Self {
            observed_through,
            freshness,
        })
    }
}

/// A value written by [`encode_freshness`]; an unreadable entry is dropped (its asset's
/// status is then logged again, which the outbox treats as nothing new).
fn decode_freshness(raw: &str) -> BTreeMap<String, FreshnessStatus> {
    let map: BTreeMap<String, String> = serde_json::from_str(raw).unwrap_or_default();
    map.into_iter()
        .filter_map(|(k, v)| Some((k, FreshnessStatus::parse(&v)?)))
        .collect()
}

fn encode_freshness(map: &BTreeMap<String, FreshnessStatus>) -> String {
    let plain: BTreeMap<&str, &str> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    serde_json::to_string(&plain).expect("string map")
}

/// The freshness statuses last logged, and when each asset's status next changes with
/// nothing happening, so that a tick evaluates only the assets whose status may have
/// changed: those with new events, those whose change is due, and all of them after a
/// reload or a settings change (the loop says which, [`FreshnessLog::touch`] and
/// [`FreshnessLog::invalidate`]).
#[derive(Debug, Clone, Default)]
pub struct FreshnessLog {
    /// As logged (durable: `reconciler.freshness`).
    pub status: BTreeMap<String, FreshnessStatus>,
    /// By asset index, as of each asset's last evaluation (in memory: a new process
    /// evaluates all once; a reload renumbers assets and clears it). `None`: evaluate at
    /// the next tick; `Some(None)`: only an event changes it.
    next: Vec<Option<Option<DateTime<Utc>>>>,
}

impl FreshnessLog {
    pub fn new(status: BTreeMap<String, FreshnessStatus>) -> Self {
        Self {
            status,
            next: Vec::new(),
        }
    }

    /// New events for these assets: evaluate them at the next tick.
    pub fn touch(&mut self, assets: impl IntoIterator<Item = AssetId>) {
        for id in assets {
            if let Some(slot) = self.next.get_mut(id.index()) {
                *slot = None;
            }
        }
    }

    /// Definitions or settings changed: evaluate every asset at the next tick.
    pub fn invalidate(&mut self) {
        self.next.clear();
    }

    /// Takes in what a committed tick evaluated.
    pub fn apply(&mut self, update: FreshnessUpdate) {
        for (id, key, status, next) in update.evaluated {
            self.status.insert(key, status);
            if self.next.len() <= id.index() {
                self.next.resize(id.index() + 1, None);
            }
            self.next[id.index()] = Some(next);
        }
        for key in update.forget {
            self.status.remove(&key);
        }
    }
}

/// What a tick evaluated, for [`FreshnessLog::apply`] once its writes commit.
#[derive(Debug, Clone, Default)]
pub struct FreshnessUpdate {
    pub evaluated: Vec<(AssetId, String, FreshnessStatus, Option<DateTime<Utc>>)>,
    /// Assets no longer defined, or without a policy now.
    pub forget: Vec<String>,
}

/// The facts of one tick.
#[derive(Debug, Clone, Default)]
pub struct TickFacts {
    pub events: Vec<NewEvent>,
    pub meta: Vec<(String, String)>,
    pub freshness: Option<FreshnessUpdate>,
    /// The earliest time a freshness status changes without anything happening.
    pub wake_at: Option<DateTime<Utc>>,
}

impl Engine {
    /// The events for what a tick observed: `observed` (already filtered to what is new),
    /// and freshness transitions against `log` (None: freshness is not tracked by this
    /// caller, e.g. a one-off `cairn materialize`).
    pub fn tick_facts(
        &self,
        observed: &[Observed],
        log: Option<&FreshnessLog>,
        now: DateTime<Utc>,
    ) -> TickFacts {
        let mut facts = TickFacts::default();
        let env = self.env(now);
        for o in observed {
            if let Observed::RetriesExhausted {
                asset,
                partition,
                failure_event_id,
                failures,
            } = o
            {
                let key = partition_key(&self.graph, *asset, *partition, env);
                facts.events.push(
                    NewEvent::new(now, EventKind::RetriesExhausted)
                        .asset(self.graph.asset(*asset).key.as_str(), &key)
                        .payload(serde_json::json!({
                            "failure_event_id": failure_event_id,
                            "failures": failures,
                        })),
                );
            }
        }
        if let Some(log) = log {
            let mut update = FreshnessUpdate::default();
            let mut status_changed = false;
            let full = log.next.iter().all(Option::is_none);
            let mut wake = |next: Option<DateTime<Utc>>| {
                if let Some(next) = next {
                    facts.wake_at = Some(facts.wake_at.map_or(next, |w| w.min(next)));
                }
            };
            for (id, asset) in self.graph.assets() {
                let key = asset.key.as_str();
                // Not due and nothing new since it was evaluated: it cannot have changed.
                if let Some(&Some(next)) = log.next.get(id.index())
                    && next.is_none_or(|t| t > now)
                {
                    wake(next);
                    continue;
                }
                let Some(f) = self.freshness(id, now) else {
                    continue;
                };
                wake(f.next_change);
                update
                    .evaluated
                    .push((id, key.to_owned(), f.status, f.next_change));
                let before = log
                    .status
                    .get(key)
                    .copied()
                    .unwrap_or(FreshnessStatus::Unknown);
                if before == f.status {
                    continue;
                }
                status_changed = true;
                facts.events.push(
                    NewEvent::new(now, EventKind::FreshnessChanged)
                        .asset(key, "")
                        .payload(serde_json::json!({
                            "from": before.as_str(),
                            "to": f.status.as_str(),
                            "since": f.since,
                            "detail": f.detail,
                        })),
                );
            }
            if full {
                update.forget = log
                    .status
                    .keys()
                    .filter(|k| {
                        self.graph
                            .id_of(k)
                            .is_none_or(|id| self.freshness_policy(id).is_none())
                    })
                    .cloned()
                    .collect();
            }
            if status_changed || !update.forget.is_empty() {
                let mut logged = log.status.clone();
                for (_, key, status, _) in &update.evaluated {
                    logged.insert(key.clone(), *status);
                }
                for key in &update.forget {
                    logged.remove(key);
                }
                facts
                    .meta
                    .push((FRESHNESS_LOGGED.to_owned(), encode_freshness(&logged)));
            }
            if !update.evaluated.is_empty() || !update.forget.is_empty() {
                facts.freshness = Some(update);
            }
        }
        if !facts.events.is_empty() {
            facts
                .meta
                .push((OBSERVED_THROUGH.to_owned(), self.max_event_id().to_string()));
        }
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_freshness_reads_back_what_was_written_and_skips_what_it_cannot_read() {
        let map: BTreeMap<String, FreshnessStatus> = [
            ("a/b".to_owned(), FreshnessStatus::Breach),
            ("c".to_owned(), FreshnessStatus::Fresh),
        ]
        .into();
        assert_eq!(decode_freshness(&encode_freshness(&map)), map);
        let odd = decode_freshness(r#"{"a":"breach","b":"purple"}"#);
        assert_eq!(
            odd,
            [("a".to_owned(), FreshnessStatus::Breach)].into(),
            "an unknown status is dropped"
        );
        assert!(decode_freshness("not json").is_empty());
    }
}
