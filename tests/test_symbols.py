"""The library exports exactly the symbols listed in lib/libelm.map."""
import re
import subprocess
import sys

lib, mapfile = sys.argv[1], sys.argv[2]
text = open(mapfile).read()
text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
wanted = set()
for block in re.findall(r"global:(.*?)(?:local:|\})", text, flags=re.S):
    wanted |= {s.strip() for s in block.split(";") if s.strip()}
out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
exported = set()
for line in out.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "TDBRVW":
        exported.add(parts[2].split("@")[0])
missing, extra = wanted - exported, exported - wanted
for s in sorted(missing):
    print(f"in map but not exported: {s}")
for s in sorted(extra):
    print(f"exported but not in map: {s}")
bad = [s for s in exported if not s.startswith("elm_")]
for s in bad:
    print(f"outside the elm_ namespace: {s}")
print(f"{len(exported)} exported symbols, {len(wanted)} in the map")
sys.exit(1 if missing or extra or bad else 0)
