"""Lab results from one lab system for one day (multi partition "system|date")."""
import datetime as dt
import common as c

c.check_test_hook()
system, day = c.required_partition().split("|")
start, _ = c.window()
r = c.rng()
tests = {"main_lab": [("GLU", "mg/dL", 70, 180), ("K", "mmol/L", 3.2, 5.6), ("HGB", "g/dL", 9, 17)],
         "reference_lab": [("A1C", "%", 4.5, 11), ("TSH", "mIU/L", 0.3, 6), ("VITD", "ng/mL", 12, 60)]}[system]
rows = []
for n in range(r.randrange(60, 120)):
    code, unit, lo, hi = r.choice(tests)
    collected = start + dt.timedelta(minutes=r.randrange(0, 24 * 60))
    resulted = collected + dt.timedelta(minutes=r.randrange(20, 600 if system == "reference_lab" else 180))
    rows.append((system, c.mrn(r), code, round(r.uniform(lo, hi), 1), unit, collected.isoformat(), resulted.isoformat()))
conn = c.connect()
c.replace_partition(conn, ["lab_system", "mrn", "test_code", "value", "unit", "collected_ts", "resulted_ts"], rows)
c.report(rows, lab_system=system)
