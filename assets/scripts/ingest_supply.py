"""End-of-day inventory of stocked supplies (no patient data)."""
import common as c

c.check_test_hook()
r = c.rng()
items = ["gloves_box", "iv_catheter", "saline_1l", "n95_mask", "gauze_pack", "syringe_10ml"]
rows = [(item, r.randrange(20, 600), r.randrange(5, 80)) for item in items]
conn = c.connect()
c.replace_partition(conn, ["item", "on_hand", "used_today"], rows)
c.report(rows)
