"""Items to reorder, from the newest day of inventory (reads the `last` partition)."""
import common as c

c.check_test_hook()
conn = c.connect()
newest = conn.execute('SELECT MAX(partition) FROM "staging__supply"').fetchone()[0] or c.fail("no inventory yet")
rows = [(r["item"], r["on_hand"], r["days_left"]) for r in c.read_upstream(conn, "staging/supply", [newest]) if r["days_left"] < 7]
c.replace_partition(conn, ["item", "on_hand", "days_left"], rows)
c.report(rows, inventory_day=newest)
