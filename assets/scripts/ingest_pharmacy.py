"""Pharmacy dispensing records for one day (synthetic)."""
import common as c

c.check_test_hook()
r = c.rng()
drugs = [("metformin", "antidiabetic", 0.12), ("lisinopril", "antihypertensive", 0.09), ("apixaban", "anticoagulant", 7.4),
         ("insulin_glargine", "antidiabetic", 11.0), ("amoxicillin", "antibiotic", 0.35), ("ondansetron", "antiemetic", 0.8)]
rows = []
for n in range(r.randrange(80, 140)):
    drug, drug_class, unit_cost = r.choice(drugs)
    qty = r.choice([1, 2, 14, 30, 60, 90])
    rows.append((f"RX{n:05d}", c.mrn(r), drug, drug_class, qty, round(qty * unit_cost, 2)))
conn = c.connect()
c.replace_partition(conn, ["dispense_id", "mrn", "drug", "drug_class", "quantity", "cost_usd"], rows)
c.report(rows)
