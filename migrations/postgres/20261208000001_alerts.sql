-- The alert outbox (docs/alerts.md): incidents and every delivery attempt. The outbox's
-- cursor (the newest log event it has turned into incidents) is `alerts.cursor` in
-- cairn_meta, written in the same transaction as the incidents it produced. Each attempt is
-- also an `alert_sent` event in the log (for the audit trail and metrics); this table is
-- what the outbox plans from, indexed by incident.

CREATE TABLE alert_incidents (
    key       TEXT PRIMARY KEY,
    event     TEXT NOT NULL,
    -- The subject as alerts show it (asset key, masked partition, or backfill / channel).
    subject   TEXT NOT NULL,
    asset     TEXT,
    status    TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    closed_at BIGINT,
    -- The incident itself (JSON) and the channels it was routed to when it opened.
    incident  TEXT NOT NULL,
    targets   TEXT NOT NULL
);
CREATE INDEX alert_incidents_by_status ON alert_incidents (status, opened_at);

CREATE TABLE alert_deliveries (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    channel   TEXT NOT NULL,
    -- firing | resolved | digest | test
    phase     TEXT NOT NULL,
    -- The incident, for firing and resolved messages.
    incident  TEXT,
    -- The idempotency key (alert-… or digest-…).
    message   TEXT NOT NULL,
    -- delivered | retryable | permanent | held_back | gave_up
    outcome   TEXT NOT NULL,
    -- What went wrong, as the channel reported it (no secrets: URLs are scrubbed).
    error     TEXT,
    -- A digest's items: JSON [[incident, phase], …].
    items     TEXT
);
CREATE INDEX alert_deliveries_by_at ON alert_deliveries (at);
CREATE INDEX alert_deliveries_by_incident ON alert_deliveries (incident) WHERE incident IS NOT NULL;
