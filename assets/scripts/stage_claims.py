"""Cleans one day of claims: keeps adjudicated ones."""
import common as c

c.check_test_hook()
c.stage("ingest/claims", ["claim_id", "mrn", "payer", "icd10", "billed_usd", "status"],
        lambda r: None if r["status"] == "pending" else (r["claim_id"], r["mrn"], r["payer"], r["icd10"], r["billed_usd"], r["status"]))
