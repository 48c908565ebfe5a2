"""Smoke test of the benchmark harness (issue 7): `bench --quick` runs, every
line is JSON, and the numbers are sane. Never a timing threshold: the
machine is shared and noisy, so only internal consistency is checked.

usage: test_bench.py BENCH_EXECUTABLE
"""
import json
import math
import subprocess
import sys

CASES = ["neuronio_stream", "neuronio_forward", "neuronio_stream_events",
         "neuronio_forward_events", "neuronio_train", "neuronio_train_events",
         "shd_dt10_forward", "shd_dt10_train", "shd_dt2_forward", "shd_dt2_train",
         "lra_forward", "lra_train", "lra_train_checkpoint"]
POSITIVE = ["sample_steps_per_s", "us_per_step", "seconds_per_call", "seconds_min",
            "flop_per_sample_step", "gflops", "max_rss_kib", "repeats", "B", "T"]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def positive(rec, key):
    v = rec.get(key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    check(ok, f"{rec.get('case')} t{rec.get('threads')}: {key} = {v!r} is not finite and positive")
    return ok


def main():
    bench = sys.argv[1]
    p = subprocess.run([bench, "--quick", "--threads", "1,2"], capture_output=True, text=True,
                       timeout=300)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    check(p.returncode == 0, f"exit status {p.returncode}")
    recs = []
    for line in p.stdout.splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            failures.append(f"not JSON: {line!r}")

    peaks = [r for r in recs if "peak" in r]
    check(len(peaks) == 1, "one SGEMM peak line")
    peak = peaks[0].get("gflops") if peaks else None
    if peak is not None:
        check(isinstance(peak, float) and math.isfinite(peak) and peak > 0, f"peak {peak!r}")

    bounds = [r for r in recs if r.get("bound") == "read_step_weights"]
    check(len(bounds) == 1, "one read_step_weights bound line")
    for b in bounds:
        # the bytes of every MLP and readout weight of the NeuronIO model:
        # (45 + 100) x 200 + 200 x 100 + 100 x 2 floats, rounded up to 64
        check(b.get("bytes") == ((145 * 200 + 200 * 100 + 100 * 2 + 63) // 64 * 64) * 4,
              f"bound bytes {b.get('bytes')!r}")
        ok = all(isinstance(b.get(k), float) and b[k] > 0 for k in ("us_best", "us_median",
                                                                    "gb_per_s"))
        check(ok, f"bound fields {b!r}")
        if ok:
            check(b["us_best"] <= b["us_median"] * (1 + 1e-9), "bound: best > median")
            check(abs(b["bytes"] / (b["us_best"] * 1e-6) / 1e9 / b["gb_per_s"] - 1) < 1e-2,
                  "bound: gb_per_s != bytes / us_best")

    seen = {}
    for r in recs:
        if "case" not in r:
            continue
        name, th = r["case"], r.get("threads")
        seen[(name, th)] = r
        check("error" not in r, f"{name} t{th}: error {r.get('error')!r}")
        check(isinstance(r.get("config"), dict) and r["config"].get("n_in", 0) > 0,
              f"{name}: config")
        if "skipped" in r:
            # only a thread count above 1 may be skipped (not yet built, or B = 1)
            check(th != 1 and isinstance(r["skipped"], str) and r["skipped"],
                  f"{name} t{th}: skipped {r['skipped']!r}")
            continue
        if not all(positive(r, k) for k in POSITIVE):
            continue
        B, T = r["B"], r["T"]
        # the fields agree with each other
        check(abs(r["sample_steps_per_s"] * r["seconds_per_call"] / (B * T) - 1) < 1e-3,
              f"{name} t{th}: sample_steps_per_s x seconds_per_call != B T")
        check(abs(r["us_per_step"] * 1e-6 * T / r["seconds_per_call"] - 1) < 1e-3,
              f"{name} t{th}: us_per_step x T != seconds_per_call")
        check(r["seconds_min"] <= r["seconds_per_call"] * (1 + 1e-9), f"{name}: min > median")
        check(abs(r["gflops"] / (r["flop_per_sample_step"] * r["sample_steps_per_s"] / 1e9) - 1)
              < 1e-2, f"{name} t{th}: gflops != flops x rate")
        if peak is not None:
            check(r["gflops"] < 2 * peak * max(1, th),
                  f"{name} t{th}: {r['gflops']} GFLOP/s is above twice the SGEMM peak {peak}")
            check(positive(r, "peak_fraction"), f"{name}: peak_fraction")
        else:
            check(r.get("peak_fraction") is None, f"{name}: peak_fraction without a peak")
        if r["kind"] == "train":
            positive(r, "tape_bytes")
            check(isinstance(r.get("loss"), float) and math.isfinite(r["loss"]), f"{name}: loss")
        check(isinstance(r.get("gemm"), str) and r["gemm"], f"{name}: gemm")

    for name in CASES:
        check((name, 1) in seen and "skipped" not in seen[(name, 1)], f"{name}: no 1-thread result")
        check((name, 2) in seen, f"{name}: no 2-thread line")
    # event input never builds the dense (B, T, n_in) array: less memory
    a, b = seen.get(("neuronio_forward", 1), {}), seen.get(("neuronio_forward_events", 1), {})
    if "max_rss_kib" in a and "max_rss_kib" in b:
        check(b["max_rss_kib"] < a["max_rss_kib"],
              f"events forward peak {b['max_rss_kib']} KiB >= dense {a['max_rss_kib']} KiB")
    a, b = seen.get(("lra_train", 1), {}), seen.get(("lra_train_checkpoint", 1), {})
    if "tape_bytes" in a and "tape_bytes" in b:
        check(b["tape_bytes"] < a["tape_bytes"], "checkpointing does not shrink the tape")

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"bench smoke test passed ({len(recs)} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
