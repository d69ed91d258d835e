"""Clinical notes of one encounter (dynamic partition: the encounter id)."""
import common as c

c.check_test_hook()
encounter = c.required_partition()
r = c.rng()
rows = [(encounter, n, r.choice(["progress", "discharge", "consult"]), f"Synthetic note {n} for {encounter}.")
        for n in range(r.randrange(1, 6))]
conn = c.connect()
c.replace_partition(conn, ["encounter_id", "seq", "note_type", "text"], rows)
c.report(rows)
