"""Nursing shifts worked per department for one day (no patient data)."""
import common as c

c.check_test_hook()
r = c.rng()
rows = [(dept, shift, r.randrange(2, 14)) for dept in c.DEPARTMENTS for shift in ("day", "night")]
conn = c.connect()
c.replace_partition(conn, ["department", "shift", "nurses"], rows)
c.report(rows)
