"""One day of lab results from every lab system, with turnaround time and flags."""
import common as c

c.check_test_hook()
day = c.required_partition()
REFERENCE = {"GLU": (70, 140), "K": (3.5, 5.1), "HGB": (12, 16), "A1C": (4.0, 5.6), "TSH": (0.4, 4.0), "VITD": (20, 50)}


def clean(row):
    lo, hi = REFERENCE[row["test_code"]]
    minutes = (c.parse_ts(row["resulted_ts"]) - c.parse_ts(row["collected_ts"])).total_seconds() / 60
    return (row["lab_system"], row["mrn"], row["test_code"], row["value"], row["unit"],
            "low" if row["value"] < lo else "high" if row["value"] > hi else "normal", round(minutes))


c.stage("ingest/lab_results", ["lab_system", "mrn", "test_code", "value", "unit", "flag", "turnaround_min"], clean,
        partitions=[f"main_lab|{day}", f"reference_lab|{day}"])
