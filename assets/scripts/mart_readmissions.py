"""Encounters of the day whose patient was discharged within the previous 30 days."""
import datetime as dt
import common as c

c.check_test_hook()
day = dt.date.fromisoformat(c.required_partition())
# The daily partitions start on FIRST_DAY: earlier days do not exist to be read.
first_day = dt.date.fromisoformat(c.os.environ.get("FIRST_DAY", "2025-01-01"))
window = [d.isoformat() for n in range(30, -1, -1) if (d := day - dt.timedelta(days=n)) >= first_day]
conn = c.connect()
encounters = c.read_upstream(conn, "staging/encounters", window)
last_discharge = {}
rows = []
for e in sorted(encounters, key=lambda e: e["admit_ts"]):
    admit = c.parse_ts(e["admit_ts"])
    previous = last_discharge.get(e["mrn"])
    if e["partition"] == day.isoformat() and previous and admit - previous <= dt.timedelta(days=30):
        rows.append((e["encounter_id"], e["mrn"], e["department"], round((admit - previous) / dt.timedelta(days=1), 1)))
    last_discharge[e["mrn"]] = max(previous or admit, c.parse_ts(e["discharge_ts"]))
c.replace_partition(conn, ["encounter_id", "mrn", "department", "days_since_discharge"], rows)
c.report(rows)
