#!/usr/bin/env python3
"""Markdown tables from one or more runs of `bench --torch` (JSON lines).

On a shared machine one run is not a measurement: this takes several runs
of the same command and prints, per (case, threads), the median and the
range over the runs; per run the libelm / torch ratios and the 2-thread
speed-ups (each computed within its own run, so that both sides of a ratio
saw the same machine), then their medians.

usage: python3 tools/bench_table.py run1.jsonl run2.jsonl ...
Standard library only.
"""
import json
import statistics
import sys


def load(path):
    cases, ratios, peak, bound = {}, {}, None, None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                sys.exit(f"{path}:{n}: not a JSON line")
            if "peak" in r:
                peak = r.get("gflops")
            elif "bound" in r:
                bound = r.get("us_best")
            elif "ratio" in r:
                ratios[(r["case"], r["threads"], r["torch_impl"])] = r["speedup"]
            elif "case" in r and "skipped" not in r and "error" not in r:
                cases[(r["case"], r["threads"])] = r
    return cases, ratios, peak, bound


def fmt_range(vals, f):
    med = statistics.median(vals)
    if len(vals) == 1:
        return f(med)
    return f"{f(med)} ({f(min(vals))}-{f(max(vals))})"


def main(paths):
    if not paths:
        sys.exit(__doc__)
    runs = [load(p) for p in paths]
    order = []
    for cases, _, _, _ in runs:
        for key in cases:
            if key not in order:
                order.append(key)
    names = []
    for c, _ in order:
        if c not in names:
            names.append(c)
    order.sort(key=lambda k: (k[1], names.index(k[0])))
    peaks = [p for _, _, p, _ in runs if p]
    bounds = [b for _, _, _, b in runs if b]
    print(f"{len(runs)} runs; SGEMM peak (1 thread) median "
          f"{statistics.median(peaks):.1f} GFLOP/s, range {min(peaks):.1f}-{max(peaks):.1f}\n"
          if peaks else f"{len(runs)} runs; no SGEMM peak\n")
    if bounds:
        print(f"Weight-read bound of the streaming step: median {statistics.median(bounds):.2f} us, "
              f"range {min(bounds):.2f}-{max(bounds):.2f}\n")
    print("| case | B | T | threads | sample-steps/s | us/step | of 1-core peak | max RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for key in order:
        recs = [c[key] for c, _, _, _ in runs if key in c]
        r0 = recs[0]
        sps = [r["sample_steps_per_s"] for r in recs]
        us = [r["us_per_step"] for r in recs]
        pf = [r["peak_fraction"] for r in recs if r.get("peak_fraction") is not None]
        rss = [r["max_rss_kib"] / 1024 for r in recs]
        print(f"| {key[0]} | {r0['B']} | {r0['T']} | {key[1]} | "
              f"{fmt_range(sps, lambda v: f'{v:,.0f}')} | {fmt_range(us, lambda v: f'{v:.2f}')} | "
              f"{fmt_range(pf, lambda v: f'{v:.2f}') if pf else '-'} | {max(rss):.0f} |")

    keys = []
    for _, ratios, _, _ in runs:
        for k in ratios:
            if k not in keys:
                keys.append(k)
    if keys:
        print("\n| case | threads | torch impl | libelm / torch, per run | median |")
        print("|---|---|---|---|---|")
        for k in keys:
            vals = [r[k] for _, r, _, _ in runs if k in r]
            print(f"| {k[0]} | {k[1]} | {k[2]} | {', '.join(f'{v:.1f}x' for v in vals)} | "
                  f"{statistics.median(vals):.1f}x |")

    names = [c for c, t in order if t == 1 and (c, 2) in order]
    if names:
        print("\n| case | 2 threads / 1 thread, per run | median |")
        print("|---|---|---|")
        for name in names:
            vals = [c[(name, 2)]["sample_steps_per_s"] / c[(name, 1)]["sample_steps_per_s"]
                    for c, _, _, _ in runs if (name, 1) in c and (name, 2) in c]
            print(f"| {name} | {', '.join(f'{v:.2f}x' for v in vals)} | "
                  f"{statistics.median(vals):.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1:])
