"""Payer claims received for one day (synthetic)."""
import common as c

c.check_test_hook()
r = c.rng()
rows = [(f"CLM{n:05d}", c.mrn(r), r.choice(["medicare", "medicaid", "commercial", "self_pay"]),
         r.choice(["I10", "E11.9", "J18.9", "N39.0", "I50.9"]), round(r.uniform(80, 25000), 2),
         r.choice(["paid", "denied", "pending"]))
        for n in range(r.randrange(50, 90))]
conn = c.connect()
c.replace_partition(conn, ["claim_id", "mrn", "payer", "icd10", "billed_usd", "status"], rows)
c.report(rows)
