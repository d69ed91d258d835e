"""The patient dimension, loaded from the registry file."""
import csv
import os
import common as c

c.check_test_hook()
with open(os.path.join(c.ASSETS_DIR, "..", ".cairn", "landing", "patient_registry.csv"), encoding="utf-8") as f:
    rows = [(r["mrn"], r["name"], int(r["birth_year"]), r["zip"]) for r in csv.DictReader(f)]
conn = c.connect()
c.replace_partition(conn, ["mrn", "name", "birth_year", "zip"], rows)
c.report(rows)
