"""Mean lab turnaround per system and test for one month (aggregates only)."""
import common as c

c.check_test_hook()
conn = c.connect()
tat = {}
for lab in c.read_upstream(conn, "staging/lab_results", c.days_of_window()):
    t = tat.setdefault((lab["lab_system"], lab["test_code"]), [0, 0])
    t[0] += 1
    t[1] += lab["turnaround_min"]
rows = [(system, test, n, round(total / n, 1)) for (system, test), (n, total) in sorted(tat.items())]
c.replace_partition(conn, ["lab_system", "test_code", "results", "mean_turnaround_min"], rows)
c.report(rows)
