"""Pharmacy spend per drug class for one month (aggregates only)."""
import common as c

c.check_test_hook()
conn = c.connect()
spend = {}
for m in c.read_upstream(conn, "staging/medications", c.days_of_window()):
    s = spend.setdefault(m["drug_class"], [0, 0.0])
    s[0] += m["quantity"]
    s[1] += m["cost_usd"]
rows = [(cls, qty, round(cost, 2)) for cls, (qty, cost) in sorted(spend.items())]
c.replace_partition(conn, ["drug_class", "units", "cost_usd"], rows)
c.report(rows)
