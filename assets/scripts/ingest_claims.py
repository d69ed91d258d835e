"""Payer claims received per day (synthetic). Backfills run a month per request (the
clearinghouse serves ranges), so one run may build several daily partitions."""
import common as c

c.check_test_hook()
conn = c.connect()
for day in c.partition_keys():
    r = c.rng(key=day)
    rows = [(f"CLM{n:05d}", c.mrn(r), r.choice(["medicare", "medicaid", "commercial", "self_pay"]),
             r.choice(["I10", "E11.9", "J18.9", "N39.0", "I50.9"]), round(r.uniform(80, 25000), 2),
             r.choice(["paid", "denied", "pending"]))
            for n in range(r.randrange(50, 90))]
    c.replace_partition(conn, ["claim_id", "mrn", "payer", "icd10", "billed_usd", "status"], rows, part=day)
    c.report(rows, partition_key=day)
