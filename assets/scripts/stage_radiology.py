"""Cleans one day of radiology orders: flags reads slower than four hours."""
import common as c

c.check_test_hook()
c.stage("ingest/radiology_orders", ["order_id", "mrn", "modality", "finding", "turnaround_min", "slow_read"],
        lambda r: (r["order_id"], r["mrn"], r["modality"], r["finding"], r["turnaround_min"], int(r["turnaround_min"] > 240)))
