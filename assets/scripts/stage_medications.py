"""Cleans one day of dispensing: drops zero quantities, keeps cost per unit."""
import common as c

c.check_test_hook()
c.stage("ingest/pharmacy_dispensing", ["dispense_id", "mrn", "drug", "drug_class", "quantity", "cost_usd", "unit_cost_usd"],
        lambda r: None if r["quantity"] <= 0 else (r["dispense_id"], r["mrn"], r["drug"], r["drug_class"], r["quantity"],
                                                   r["cost_usd"], round(r["cost_usd"] / r["quantity"], 4)))
