#!/bin/sh
# The whole test suite (README, second command; CI runs exactly this).
set -eu
cd "$(dirname "$0")/.."
sh tools/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build
rc=0
meson test -C build --print-errorlogs "$@" || rc=$?
# One closing line over all test programs and the cases inside them.
python3 - build/meson-logs <<'PY'
import json, re, sys
d = sys.argv[1]
passed = failed = skipped = 0
cmocka = {"config", "model", "kernels", "forward", "tape", "loss", "metrics", "optim", "dataset", "trainer",
          "modelfile", "checkpoint", "yaml", "train_config", "idx", "events", "shd", "neuronio",
          "mnist", "listops", "threads", "tape_threads", "state_events"}
for line in open(d + "/testlog.json"):
    t = json.loads(line)
    name = t["name"].split(" / ")[-1]  # meson prefixes "project:suite / " once suites exist
    if name in cmocka:
        out = t.get("stdout", "")
        # cmocka names a failed or skipped case twice (when it runs, and in
        # the closing list): count names once
        passed += len(re.findall(r"^\[       OK \] test_", out, re.M))
        bad = set(re.findall(r"^\[  FAILED  \] (test_\w+)", out, re.M))
        failed += len(bad)
        skipped += len(set(re.findall(r"^\[  SKIPPED \] (test_\w+)", out, re.M)))
        if t["result"] not in ("OK", "SKIP") and not bad:
            failed += 1  # crashed or timed out before cmocka could report
        continue
    out = t.get("stdout", "")
    if re.search(r"^=*\s*\d+ (passed|failed)", out, re.M):  # pytest: count its cases
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", out)}
        if counts:
            passed += counts.get("passed", 0)
            failed += counts.get("failed", 0) + counts.get("error", 0)
            skipped += counts.get("skipped", 0)
            if t["result"] not in ("OK", "SKIP") and not counts.get("failed") and not counts.get("error"):
                failed += 1
            continue
    if t["result"] == "OK": passed += 1
    elif t["result"] == "SKIP": skipped += 1
    else: failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $rc
