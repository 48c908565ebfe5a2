"""docs/c-api.md documents the whole public API of include/elm.h.

usage: test_docs.py LIBELM_MAP C_API_MD ELM_H

Checks, each failure printed on its own line (exit 1 if any):
  - every symbol of the map has a '### ' heading of its own in c-api.md
    (its name in backquotes), and that heading's section shows its
    prototype ('name(') and a line 'Since X.Y.' equal to the map node that
    exports it (LIBELM_X.Y);
  - each function heading sits under the '## N.' section whose number is
    the elm.h section (1-12) that declares the function;
  - no heading documents an elm_ function that the map does not export;
  - every ELM_API function declared in elm.h is in the map and vice versa;
  - every ELM_E_* code, every other ELM_* enum value or macro, and every
    public type name (typedef) of elm.h appears in c-api.md.
"""
import re
import sys

if len(sys.argv) != 4:
    sys.exit(__doc__)
map_path, doc_path, header_path = sys.argv[1:]
mapfile = re.sub(r"/\*.*?\*/", "", open(map_path).read(), flags=re.S)
doc = open(doc_path).read()
header = open(header_path).read()
errors = []

# The map: symbol -> version of its node.
since = {}
for node, body in re.findall(r"LIBELM_(\d+\.\d+)\s*\{(.*?)\}", mapfile, flags=re.S):
    for block in re.findall(r"global:(.*?)(?:local:|$)", body, flags=re.S):
        for sym in (s.strip() for s in block.split(";")):
            if sym:
                if sym in since:
                    errors.append(f"map: {sym} is listed in LIBELM_{since[sym]} and LIBELM_{node}")
                since.setdefault(sym, node)
if not since:
    errors.append(f"{map_path}: no symbols found")

# The header: section number of each declared function, types, constants.
code = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), header, flags=re.S)
# Section titles: " * 3. elm_config: HYPER-PARAMETERS" (the table of
# contents at the top indents its entries further, so it does not match).
section_at = [(m.start(), int(m.group(1)))
              for m in re.finditer(r"^ \* (\d+)\. \S", header, flags=re.M)]
header_section = {}
for m in re.finditer(r"^ELM_API\b[^;{]*?\b(elm_\w+)\s*\(", code, flags=re.M):
    sec = max((n for pos, n in section_at if pos < m.start()), default=0)
    header_section[m.group(1)] = sec
for f in sorted(set(header_section) - set(since)):
    errors.append(f"elm.h declares {f} but the map does not export it")
for f in sorted(set(since) - set(header_section)):
    errors.append(f"the map exports {f} but elm.h does not declare it")

types = set(re.findall(r"\}\s*(elm_\w+)\s*;", code))
types |= set(re.findall(r"\btypedef\s+struct\s+\w+\s+(elm_\w+)\s*;", code))
types |= set(re.findall(r"\btypedef\s+[^;]*?\(\s*\*\s*(elm_\w+)\s*\)", code))
constants = set()
for body in re.findall(r"\benum\s+\w*\s*\{(.*?)\}", code, flags=re.S):
    constants |= set(re.findall(r"\b(ELM_\w+)\s*(?:=|,|$)", body.strip() + ","))
constants |= set(re.findall(r"^\s*#\s*define\s+(ELM_\w+)", code, flags=re.M))
constants -= {"ELM_H", "ELM_API"}
codes = {c for c in constants if c.startswith("ELM_E_")}
if len(codes) < 15:
    errors.append(f"{header_path}: found only {len(codes)} ELM_E_* codes; is the parser broken?")

for name in sorted(codes):
    if not re.search(r"\b" + name + r"\b", doc):
        errors.append(f"c-api.md never mentions the error code {name}")
for name in sorted(constants - codes):
    if not re.search(r"\b" + name + r"\b", doc):
        errors.append(f"c-api.md never mentions the constant {name}")
for name in sorted(types):
    if not re.search(r"\b" + name + r"\b", doc):
        errors.append(f"c-api.md never mentions the type {name}")

# The guide: '## N.' sections holding '### ' entries.
documented = {}
doc_section = 0
lines = doc.split("\n")
in_code = False
headings = []  # (line index, level, text)
for i, line in enumerate(lines):
    if line.startswith("```"):
        in_code = not in_code
        continue
    m = None if in_code else re.match(r"(#{1,6}) (.*)", line)
    if m:
        headings.append((i, len(m.group(1)), m.group(2)))
for k, (i, level, text) in enumerate(headings):
    if level == 2:
        m = re.match(r"(\d+)\.", text)
        doc_section = int(m.group(1)) if m else 0
        continue
    if level != 3:
        continue
    end = headings[k + 1][0] if k + 1 < len(headings) else len(lines)
    body = "\n".join(lines[i + 1:end])
    names = re.findall(r"`(elm_\w+)`", text)
    funcs = [n for n in names if n in since]
    for n in names:
        if n not in since and n not in types:
            errors.append(f"c-api.md line {i + 1}: heading names {n}, which is neither "
                          "an exported function nor a type of elm.h")
    if not funcs:
        continue
    m = re.search(r"^Since (\d+\.\d+)\.", body, flags=re.M)
    for f in funcs:
        if f in documented:
            errors.append(f"c-api.md line {i + 1}: {f} already has a heading (line {documented[f]})")
            continue
        documented[f] = i + 1
        if not re.search(r"\b" + f + r"\(", body):
            errors.append(f"c-api.md line {i + 1}: the section of {f} does not show '{f}('")
        if not m:
            errors.append(f"c-api.md line {i + 1}: no 'Since X.Y.' line for {f}")
        elif m.group(1) != since[f]:
            errors.append(f"c-api.md line {i + 1}: {f} says Since {m.group(1)}, "
                          f"the map exports it in LIBELM_{since[f]}")
        want = header_section.get(f)
        if want is not None and want != doc_section:
            errors.append(f"c-api.md line {i + 1}: {f} is in section {doc_section} of the guide, "
                          f"elm.h declares it in section {want}")

for f in sorted(set(since) - set(documented)):
    errors.append(f"not documented in c-api.md (needs a '### `{f}`' heading): {f} "
                  f"(LIBELM_{since[f]})")

for e in errors:
    print(e)
print(f"{len(documented)} of {len(since)} exported functions documented, "
      f"{len(codes)} error codes, {len(constants)} constants, {len(types)} types checked")
sys.exit(1 if errors else 0)
