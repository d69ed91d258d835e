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

/// The facts of one tick.
#[derive(Debug, Clone, Default)]
pub struct TickFacts {
    pub events: Vec<NewEvent>,
    pub meta: Vec<(String, String)>,
    /// The freshness statuses now logged, when they changed.
    pub freshness: Option<BTreeMap<String, FreshnessStatus>>,
    /// The earliest time a freshness status changes without anything happening.
    pub wake_at: Option<DateTime<Utc>>,
}

impl Engine {
    /// The events for what a tick observed: `observed` (already filtered to what is new),
    /// and freshness transitions against `logged` (None: freshness is not tracked by this
    /// caller, e.g. a one-off `cairn materialize`).
    pub fn tick_facts(
        &self,
        observed: &[Observed],
        logged: Option<&BTreeMap<String, FreshnessStatus>>,
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
        if let Some(logged) = logged {
            // Compared in place: the map is copied only when something changed.
            let mut changed: Vec<(&str, FreshnessStatus)> = Vec::new();
            let mut tracked = 0;
            for (id, asset) in self.graph.assets() {
                let Some(f) = self.freshness(id, now) else {
                    continue;
                };
                tracked += 1;
                if let Some(next) = f.next_change {
                    facts.wake_at = Some(facts.wake_at.map_or(next, |w| w.min(next)));
                }
                let key = asset.key.as_str();
                let before = logged
                    .get(key)
                    .copied()
                    .unwrap_or(FreshnessStatus::Unknown);
                if before == f.status {
                    continue;
                }
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
                changed.push((key, f.status));
            }
            // Assets no longer defined, or without a policy now, are forgotten.
            let stale_entries = logged.len() + changed.len() > tracked
                && logged.keys().any(|k| {
                    self.graph
                        .id_of(k)
                        .is_none_or(|id| self.freshness_policy(id).is_none())
                });
            if !changed.is_empty() || stale_entries {
                let mut now_logged = logged.clone();
                for (key, status) in changed {
                    now_logged.insert(key.to_owned(), status);
                }
                now_logged.retain(|k, _| {
                    self.graph
                        .id_of(k)
                        .is_some_and(|id| self.freshness_policy(id).is_some())
                });
                facts
                    .meta
                    .push((FRESHNESS_LOGGED.to_owned(), encode_freshness(&now_logged)));
                facts.freshness = Some(now_logged);
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
