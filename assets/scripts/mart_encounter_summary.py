"""One row per encounter of the day: diagnoses and abnormal labs of its patient that day."""
import common as c

c.check_test_hook()
day = c.required_partition()
conn = c.connect()
encounters = c.read_upstream(conn, "staging/encounters", [day])
diagnoses = c.read_upstream(conn, "staging/diagnoses", [day])
labs = c.read_upstream(conn, "staging/lab_results", [day])
dx_by_mrn, abnormal_by_mrn = {}, {}
for d in diagnoses:
    dx_by_mrn.setdefault(d["mrn"], set()).add(d["icd10"])
for lab in labs:
    if lab["flag"] != "normal":
        abnormal_by_mrn[lab["mrn"]] = abnormal_by_mrn.get(lab["mrn"], 0) + 1
rows = [(e["encounter_id"], e["mrn"], e["department"], e["encounter_type"], e["los_hours"], e["age"],
         ",".join(sorted(dx_by_mrn.get(e["mrn"], ()))), abnormal_by_mrn.get(e["mrn"], 0)) for e in encounters]
c.replace_partition(conn, ["encounter_id", "mrn", "department", "encounter_type", "los_hours", "age", "diagnoses", "abnormal_labs"], rows)
c.report(rows)
