"""Inventory with days of supply left at the day's burn rate."""
import common as c

c.check_test_hook()
c.stage("ingest/supply_inventory", ["item", "on_hand", "used_today", "days_left"],
        lambda r: (r["item"], r["on_hand"], r["used_today"], round(r["on_hand"] / max(r["used_today"], 1), 1)))
