"""Encounters, mean stay and abnormal labs per department for one week (aggregates only)."""
import common as c

c.check_test_hook()
conn = c.connect()
totals = {}
for e in c.read_upstream(conn, "marts/encounter_summary", c.days_of_window()):
    t = totals.setdefault(e["department"], [0, 0.0, 0])
    t[0] += 1
    t[1] += e["los_hours"]
    t[2] += e["abnormal_labs"]
# Small cells are suppressed: counts under 11 could single out a patient.
rows = [(dept, n if n >= 11 else None, round(los / n, 1) if n >= 11 else None, abnormal if n >= 11 else None)
        for dept, (n, los, abnormal) in sorted(totals.items())]
c.replace_partition(conn, ["department", "encounters", "mean_los_hours", "abnormal_labs"], rows)
c.report(rows)
