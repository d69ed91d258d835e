"""Problem-list diagnoses (ICD-10) recorded during one day (synthetic)."""
import common as c

c.check_test_hook()
r = c.rng()
codes = [("I10", "essential hypertension"), ("E11.9", "type 2 diabetes"), ("J18.9", "pneumonia"),
         ("N39.0", "urinary tract infection"), ("I50.9", "heart failure"), ("F32.9", "depression")]
rows = []
for n in range(r.randrange(40, 80)):
    code, label = r.choice(codes)
    rows.append((c.mrn(r), code, label, r.choice(["active", "resolved"])))
conn = c.connect()
c.replace_partition(conn, ["mrn", "icd10", "description", "status"], rows)
c.report(rows)
