"""Scheduled clinic appointments for one day (synthetic)."""
import datetime as dt
import common as c

c.check_test_hook()
start, _ = c.window()
r = c.rng()
rows = [(f"APT{n:04d}", c.mrn(r), c.fake_name(r), (start + dt.timedelta(hours=8, minutes=15 * r.randrange(0, 36))).isoformat(),
         r.choice(["family_medicine", "cardiology", "orthopedics", "pediatrics"]), r.choice(["completed", "no_show", "canceled"]))
        for n in range(r.randrange(60, 100))]
conn = c.connect()
c.replace_partition(conn, ["appointment_id", "mrn", "patient_name", "slot_ts", "clinic", "status"], rows)
c.report(rows)
