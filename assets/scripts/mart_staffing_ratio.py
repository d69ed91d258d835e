"""Encounters per nurse per department for one day."""
import common as c

c.check_test_hook()
day = c.required_partition()
conn = c.connect()
nurses = {s["department"]: s["nurses"] for s in c.read_upstream(conn, "staging/staffing", [day])}
counts = {}
for e in c.read_upstream(conn, "marts/deid_encounters", [day]):
    counts[e["department"]] = counts.get(e["department"], 0) + 1
rows = [(dept, counts.get(dept, 0), n, round(counts.get(dept, 0) / n, 2)) for dept, n in sorted(nurses.items())]
c.replace_partition(conn, ["department", "encounters", "nurses", "encounters_per_nurse"], rows)
c.report(rows)
