"""Shared helpers for the example warehouse's scripts.

Every script builds one asset partition into a local SQLite warehouse. Cairn tells it
what to build through the environment:

  CAIRN_ASSET            the asset key, e.g. "staging/encounters"
  CAIRN_PARTITION        the partition key (absent for unpartitioned assets;
                         "main_lab|2025-01-31" for multi partitions)
  CAIRN_PARTITION_START  ISO 8601 start of the partition's time window (time partitions)
  CAIRN_PARTITION_END    ISO 8601 end of the window (exclusive)
  CAIRN_RUN_ID           the run
  CAIRN_OUTPUT           a file to append JSON lines to (data version, metadata)
  CAIRN_WAREHOUSE        the warehouse file (default ../.cairn/warehouse.db, relative
                         to the assets directory)

All data is synthetic and deterministic: the same partition always yields the same rows,
so the same data version, so a re-run never makes anything downstream stale.
"""

import datetime as dt
import hashlib
import json
import os
import random
import sqlite3
import sys
import time

ASSETS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIRST_NAMES = ["Avery", "Blake", "Casey", "Drew", "Emery", "Finley", "Gray", "Harper", "Jordan",
               "Kendall", "Logan", "Morgan", "Parker", "Quinn", "Reese", "Sawyer", "Taylor"]
LAST_NAMES = ["Testpatient", "Synthetic", "Example", "Sample", "Placeholder", "Mockton",
              "Fakeley", "Demoson"]
DEPARTMENTS = ["emergency", "med_surg", "icu", "obstetrics", "outpatient_clinic", "surgery"]


def fail(message):
    print(f"{os.environ.get('CAIRN_ASSET', 'script')}: {message}", file=sys.stderr)
    sys.exit(1)


def asset():
    return os.environ.get("CAIRN_ASSET") or fail("CAIRN_ASSET is not set (run me through Cairn)")


def partition():
    """The partition key, or None for an unpartitioned asset."""
    return os.environ.get("CAIRN_PARTITION") or None


def required_partition():
    return partition() or fail("CAIRN_PARTITION is not set: this asset is partitioned")


def window():
    """(start, end) of the partition's time window as aware datetimes."""
    start = os.environ.get("CAIRN_PARTITION_START")
    end = os.environ.get("CAIRN_PARTITION_END")
    if not start or not end:
        fail("CAIRN_PARTITION_START/END are not set: this asset has time partitions")
    return parse_ts(start), parse_ts(end)


def parse_ts(raw):
    return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))


def check_test_hook():
    """CAIRN_EXAMPLE_FAIL=<asset key> (or "1" for every asset) makes a script fail, for
    testing retries and alerts."""
    target = os.environ.get("CAIRN_EXAMPLE_FAIL")
    if target in ("1", asset()):
        fail(f"failing on purpose (CAIRN_EXAMPLE_FAIL={target})")


def partition_keys():
    """The daily partition keys of this run: one, or every day of a single_run range."""
    return [partition()] if partition() else days_of_window()


def rng(*parts, key=None):
    """A random generator seeded by the asset and partition (and anything else given)."""
    seed = "|".join([asset(), key or partition() or "-"] + [str(p) for p in parts])
    return random.Random(hashlib.sha256(seed.encode()).hexdigest())


def mrn(r):
    return f"MRN{r.randrange(1, 5000):07d}"


def fake_name(r):
    return f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}"


def connect():
    path = os.environ.get("CAIRN_WAREHOUSE") or os.path.join(ASSETS_DIR, "..", ".cairn", "warehouse.db")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    # Switching a new database to WAL does not wait on the busy timeout: scripts starting
    # together on a fresh warehouse get "database is locked" at once. Retry for a while.
    for attempt in range(100):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 99:
                raise
            time.sleep(0.05)
    return conn


def table_name(key=None):
    return (key or asset()).replace("/", "__")


def replace_partition(conn, columns, rows, key=None, part=None):
    """Replaces this partition's (or `part`'s) rows of the asset's table in one transaction."""
    table = table_name(key)
    part = part or partition() or ""
    cols = ", ".join(f'"{c}"' for c in columns)
    with conn:
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (partition TEXT NOT NULL, {cols})')
        conn.execute(f'DELETE FROM "{table}" WHERE partition = ?', (part,))
        marks = ", ".join("?" for _ in range(len(columns) + 1))
        conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', [(part, *row) for row in rows])
    return rows


def read_upstream(conn, key, partitions):
    """Rows of an upstream asset for the given partition keys; fails clearly when any is missing."""
    table = table_name(key)
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
    if not exists:
        fail(f"upstream {key} has never been materialized")
    found = {p for (p,) in conn.execute(f'SELECT DISTINCT partition FROM "{table}"')}
    missing = [p for p in partitions if p not in found]
    if missing:
        fail(f"upstream {key} is missing partition(s): {', '.join(missing[:5])}")
    marks = ", ".join("?" for _ in partitions)
    cur = conn.execute(f'SELECT * FROM "{table}" WHERE partition IN ({marks}) ORDER BY rowid', list(partitions))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur]


def days_of_window():
    """Daily partition keys (local dates) covered by the window, for roll-ups."""
    start, end = window()
    tz = dt.timezone(dt.timedelta(hours=-6))  # keys are Chicago dates; any offset inside the day works
    first = (start + dt.timedelta(hours=12)).astimezone(tz).date()
    last = (end - dt.timedelta(hours=12)).astimezone(tz).date()
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def report(rows, partition_key=None, **metadata):
    """Reports the data version (sha256 of the rows) and metadata to Cairn, if it listens;
    `partition_key` names the partition when one run builds several."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        digest.update(b"\n")
    metadata = {"row_count": len(rows), **metadata}
    out = os.environ.get("CAIRN_OUTPUT")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            scope = {"partition": partition_key} if partition_key else {}
            f.write(json.dumps({"type": "data_version", "value": digest.hexdigest(), **scope}) + "\n")
            f.write(json.dumps({"type": "metadata", "values": metadata, **scope}) + "\n")
    print(f"{asset()} {partition_key or partition() or ''}: {len(rows)} rows, data version {digest.hexdigest()[:12]}")


def stage(upstream_key, columns, transform, partitions=None):
    """The usual staging step: read the upstream partition(s), transform each row
    (returning None drops it), replace this partition, report."""
    conn = connect()
    rows = [out for row in read_upstream(conn, upstream_key, partitions or [required_partition()])
            if (out := transform(row)) is not None]
    replace_partition(conn, columns, rows)
    report(rows)
