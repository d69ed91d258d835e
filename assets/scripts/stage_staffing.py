"""Nurses per department per day (both shifts)."""
import common as c

c.check_test_hook()
conn = c.connect()
totals = {}
for row in c.read_upstream(conn, "ingest/staffing_shifts", [c.required_partition()]):
    totals[row["department"]] = totals.get(row["department"], 0) + row["nurses"]
rows = sorted(totals.items())
c.replace_partition(conn, ["department", "nurses"], rows)
c.report(rows)
