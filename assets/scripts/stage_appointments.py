"""Cleans one day of appointments: no-show flag."""
import common as c

c.check_test_hook()
c.stage("ingest/appointments", ["appointment_id", "mrn", "slot_ts", "clinic", "status", "no_show"],
        lambda r: (r["appointment_id"], r["mrn"], r["slot_ts"], r["clinic"], r["status"], int(r["status"] == "no_show")))
