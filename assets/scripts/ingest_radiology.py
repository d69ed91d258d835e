"""Radiology orders and reads for one day (synthetic)."""
import common as c

c.check_test_hook()
r = c.rng()
rows = [(f"RAD{n:04d}", c.mrn(r), r.choice(["xray_chest", "ct_head", "mri_knee", "us_abdomen"]),
         r.choice(["normal", "abnormal", "critical"]), r.randrange(15, 600))
        for n in range(r.randrange(15, 40))]
conn = c.connect()
c.replace_partition(conn, ["order_id", "mrn", "modality", "finding", "turnaround_min"], rows)
c.report(rows)
