"""Cleans one day of diagnoses: active problems only, ICD-10 chapter."""
import common as c

c.check_test_hook()
c.stage("ingest/diagnoses", ["mrn", "icd10", "chapter", "description"],
        lambda r: None if r["status"] != "active" else (r["mrn"], r["icd10"], r["icd10"][0], r["description"]))
