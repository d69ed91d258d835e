"""Observes the master patient index that registration drops in the landing folder.

The file arrives from outside Cairn; for the example, a deterministic synthetic one is
created when none is there. Reports its sha256 as the data version.
"""
import hashlib
import os
import random
import common as c

landing = os.path.join(c.ASSETS_DIR, "..", ".cairn", "landing")
path = os.path.join(landing, "patient_registry.csv")
if not os.path.exists(path):
    os.makedirs(landing, exist_ok=True)
    r = random.Random("patient_registry")
    with open(path, "w", encoding="utf-8") as f:
        f.write("mrn,name,birth_year,zip\n")
        for n in range(1, 5000):
            f.write(f"MRN{n:07d},{c.fake_name(r)},{r.randrange(1930, 2024)},{r.choice(['68801', '68803', '68847', '69101'])}\n")
with open(path, "rb") as f:
    version = hashlib.sha256(f.read()).hexdigest()
out = os.environ.get("CAIRN_OUTPUT")
if out:
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"type": "data_version", "value": "%s"}\n' % version)
print(f"patient registry: data version {version[:12]}")
