"""Safe Harbor de-identified encounters: no names or MRNs, ages over 89 grouped, 3-digit
ZIP, dates reduced to the year, a keyed hash as the research id."""
import hashlib
import os
import common as c

c.check_test_hook()
# The salt stays out of the output; in production it comes from a secret.
salt = os.environ.get("DEID_SALT", "example-salt-not-secret")
day = c.required_partition()
conn = c.connect()
zips = {p["mrn"]: p["zip"][:3] for p in c.read_upstream(conn, "staging/patients", [""])}
rows = []
for e in c.read_upstream(conn, "staging/encounters", [day]):
    research_id = hashlib.sha256((salt + e["mrn"]).encode()).hexdigest()[:16]
    age = e["age"] if e["age"] is None or e["age"] < 90 else 90
    rows.append((research_id, e["admit_ts"][:4], age, zips.get(e["mrn"], "000"), e["department"], e["encounter_type"], e["los_hours"]))
c.replace_partition(conn, ["research_id", "admit_year", "age", "zip3", "department", "encounter_type", "los_hours"], rows)
c.report(rows)
