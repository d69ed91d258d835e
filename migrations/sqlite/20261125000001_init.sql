-- Cairn's store, SQLite dialect. Keep in step with ../postgres/ (same file names).
-- Timestamps are microseconds since the Unix epoch (UTC); JSON is TEXT.

CREATE TABLE cairn_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO cairn_meta (key, value) VALUES ('schema', 'cairn');

-- Asset keys interned to small integers: the log and indexes hold millions of rows.
CREATE TABLE assets (
    id  INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);

-- The append-only event log. `id` is the tail cursor.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    asset_id  INTEGER REFERENCES assets (id),
    partition TEXT NOT NULL DEFAULT '',
    run_id    TEXT,
    payload   TEXT NOT NULL
);
CREATE INDEX events_by_asset ON events (asset_id, partition, id);
CREATE INDEX events_by_run ON events (run_id, id) WHERE run_id IS NOT NULL;

-- Code versions interned: every materialization of an asset usually shares one.
CREATE TABLE code_versions (
    id      INTEGER PRIMARY KEY,
    version TEXT NOT NULL UNIQUE
);

-- Derived: the latest materialization of each asset partition (same transaction as the event).
-- `data_changed_event_id` is the event at which the data version last changed: a re-run
-- that produced identical data keeps it, so nothing downstream turns stale.
-- `inputs_as_of` is the newest event id the run's inputs were read at.
CREATE TABLE latest_materializations (
    asset_id              INTEGER NOT NULL REFERENCES assets (id),
    partition             TEXT NOT NULL,
    event_id              INTEGER NOT NULL,
    at                    INTEGER NOT NULL,
    data_version          TEXT NOT NULL,
    code_version_id       INTEGER NOT NULL REFERENCES code_versions (id),
    data_changed_event_id INTEGER NOT NULL,
    inputs_as_of          INTEGER NOT NULL,
    PRIMARY KEY (asset_id, partition)
) WITHOUT ROWID;

-- Derived: the latest observation of each source asset partition.
CREATE TABLE latest_observations (
    asset_id              INTEGER NOT NULL REFERENCES assets (id),
    partition             TEXT NOT NULL,
    event_id              INTEGER NOT NULL,
    at                    INTEGER NOT NULL,
    data_version          TEXT NOT NULL,
    data_changed_event_id INTEGER NOT NULL,
    PRIMARY KEY (asset_id, partition)
) WITHOUT ROWID;

-- Derived: failed attempts of each asset partition since its last materialization
-- (`failures` counts them; the row is stale once a newer materialization exists).
CREATE TABLE partition_failures (
    asset_id  INTEGER NOT NULL REFERENCES assets (id),
    partition TEXT NOT NULL,
    event_id  INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    failures  INTEGER NOT NULL,
    PRIMARY KEY (asset_id, partition)
) WITHOUT ROWID;

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    asset         TEXT NOT NULL,
    partition     TEXT,
    range_start   TEXT,
    range_end     TEXT,
    status        TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    pool          TEXT,
    backfill_id   TEXT,
    reasons       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    not_before    INTEGER NOT NULL,
    claimed_by    TEXT,
    pid           INTEGER,
    started_at    INTEGER,
    heartbeat_at  INTEGER,
    finished_at   INTEGER,
    error         TEXT,
    -- PHI (effective phi or limited): only PHI-capable executors claim it.
    phi           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_status ON runs (status, not_before, created_at);
CREATE INDEX runs_by_asset ON runs (asset, partition, created_at);
CREATE INDEX runs_by_backfill ON runs (backfill_id) WHERE backfill_id IS NOT NULL;

CREATE TABLE run_logs (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    stream TEXT NOT NULL,
    line   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX run_logs_by_at ON run_logs (at);

CREATE TABLE backfills (
    id          TEXT PRIMARY KEY,
    selection   TEXT NOT NULL,
    partitions  TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    progress    TEXT NOT NULL
);

CREATE TABLE freshness_overrides (
    asset   TEXT PRIMARY KEY,
    policy  TEXT NOT NULL,
    set_by  TEXT NOT NULL,
    set_at  INTEGER NOT NULL
);

CREATE TABLE dynamic_partitions (
    definition TEXT NOT NULL,
    key        TEXT NOT NULL,
    position   INTEGER NOT NULL,
    added_at   INTEGER NOT NULL,
    removed_at INTEGER,
    PRIMARY KEY (definition, key)
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    phi         INTEGER NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Append-only; retention never prunes it (HIPAA expects six years).
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    details TEXT NOT NULL
);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
