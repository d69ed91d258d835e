"""ADT feed: admissions, discharges and transfers for one day (synthetic)."""
import datetime as dt
import common as c

c.check_test_hook()
start, _ = c.window()
r = c.rng()
rows = []
for n in range(r.randrange(40, 70)):
    admit = start + dt.timedelta(minutes=r.randrange(0, 24 * 60))
    stay = dt.timedelta(hours=r.choice([2, 4, 8, 26, 50, 75]))
    rows.append((f"ENC{c.required_partition().replace('-', '')}{n:03d}", c.mrn(r), c.fake_name(r),
                 admit.isoformat(), (admit + stay).isoformat(), r.choice(c.DEPARTMENTS),
                 r.choice(["inpatient", "observation", "emergency", "outpatient"])))
conn = c.connect()
c.replace_partition(conn, ["encounter_id", "mrn", "patient_name", "admit_ts", "discharge_ts", "department", "encounter_type"], rows)
c.report(rows)
