"""Cleans one day of ADT encounters: length of stay, patient age from the registry."""
import csv
import datetime as dt
import os
import common as c

c.check_test_hook()
with open(os.path.join(c.ASSETS_DIR, "..", ".cairn", "landing", "patient_registry.csv"), encoding="utf-8") as f:
    birth_year = {row["mrn"]: int(row["birth_year"]) for row in csv.DictReader(f)}


def clean(row):
    admit, discharge = c.parse_ts(row["admit_ts"]), c.parse_ts(row["discharge_ts"])
    age = admit.year - birth_year[row["mrn"]] if row["mrn"] in birth_year else None
    return (row["encounter_id"], row["mrn"], row["patient_name"], row["admit_ts"], row["discharge_ts"],
            round((discharge - admit) / dt.timedelta(hours=1), 1), row["department"], row["encounter_type"], age)


c.stage("ingest/adt_encounters", ["encounter_id", "mrn", "patient_name", "admit_ts", "discharge_ts", "los_hours",
                                  "department", "encounter_type", "age"], clean)
