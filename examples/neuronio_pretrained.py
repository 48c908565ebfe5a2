"""The official pretrained ELM neuron on NeuronIO, run by libelm.

Spieler et al. (2024) trained a Branch-ELM to reproduce a detailed
biophysical model of a layer-5 pyramidal neuron (NeuronIO, Beniaguev et al.
2021): 1278 synaptic inputs (639 excitatory + 639 inhibitory segments) in,
the somatic spike and voltage out, one step per millisecond. This example

  1. converts the official PyTorch checkpoint to a .elm file
     (python3 -m elm.convert official; no torch needed),
  2. converts a NeuronIO simulation file (a pickle of 8 simulations of
     6 s) to libelm's memory-mapped layout (python3 -m elm.neuronio convert),
  3. evaluates the model with the official protocol in C
     (elm_neuronio_evaluate): spike ROC AUC and soma RMSE,
  4. runs one simulation through the model and plots prediction against
     the simulated cell: soma voltage (mV) and spike probability, with the
     cell's true output spikes marked (SVG and PNG with matplotlib, or SVG
     from a tiny built-in writer without it).

    python3 neuronio_pretrained.py [--quick] [--out DIR] [--shared DIR]

Needs ../shared/reference (or $ELM_SHARED): exits with 77 (skip) without it.
"""

import argparse
import glob
import os
import subprocess
import sys
import time

import numpy as np

import elm
from elm.neuronio import NioFile

# The official numbers for this model on this file (official_eval.json).
EXPECTED = {"auc": 0.9937, "soma_rmse": 0.647}


def run(*args):
    """Run `python3 -m ...` with this interpreter (and the same PYTHONPATH)."""
    cmd = [sys.executable, "-m"] + list(args)
    print("$ python3 -m " + " ".join(os.path.normpath(a) if os.sep in a else a for a in args))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print("  " + r.stdout.strip().replace("\n", "\n  "))
    if r.returncode != 0:
        raise SystemExit("failed (exit code %d)" % r.returncode)


def plot(path_stem, t, v_true, v_pred, p_spike, spikes, title):
    """Two panels: soma voltage (target vs prediction) and spike
    probability with the true spikes. Returns the files written."""
    try:
        import matplotlib
        matplotlib.use("Agg")                  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return [write_svg(path_stem + ".svg", t, v_true, v_pred, p_spike, spikes, title)]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True,
                                 gridspec_kw={"height_ratios": [2, 1]})
    a1.plot(t, v_true, color="0.3", lw=0.8, label="simulated cell (NEURON)")
    a1.plot(t, v_pred, color="tab:red", lw=0.8, label="ELM prediction")
    a1.set_ylabel("soma (mV)")
    a1.set_ylim(-85, -50)                      # spikes are cut: the target is min(v, -55 mV)
    a1.legend(loc="upper right", fontsize=8)
    a1.set_title(title, fontsize=10)
    a2.plot(t, p_spike, color="tab:blue", lw=0.8, label="ELM spike probability")
    a2.plot(spikes, np.full(len(spikes), 1.02), "k|", ms=10, label="true output spikes")
    a2.set_ylim(0, 1.1)
    a2.set_ylabel("P(spike) per ms")
    a2.set_xlabel("time (ms)")
    a2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    files = [path_stem + ".svg", path_stem + ".png"]
    for f in files:
        fig.savefig(f, dpi=120)
    plt.close(fig)
    return files


def write_svg(path, t, v_true, v_pred, p_spike, spikes, title):
    """The same figure without matplotlib: polylines in a plain SVG."""
    W, H, L, R = 1000, 480, 60, 20
    panels = [(40, 260, -85.0, -50.0), (300, 440, 0.0, 1.1)]   # (top, bottom, lo, hi)
    t0, t1 = float(t[0]), float(t[-1])

    def xy(tt, v, panel):
        top, bot, lo, hi = panel
        x = L + (tt - t0) / (t1 - t0) * (W - L - R)
        y = bot - (min(max(v, lo), hi) - lo) / (hi - lo) * (bot - top)
        return "%.1f,%.1f" % (x, y)

    def line(ts, vs, panel, color):
        pts = " ".join(xy(a, b, panel) for a, b in zip(ts, vs))
        return '<polyline fill="none" stroke="%s" stroke-width="1" points="%s"/>' % (color, pts)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="12"><rect width="100%%" height="100%%" fill="white"/>' % (W, H),
           '<text x="%d" y="20">%s</text>' % (L, title)]
    for (top, bot, lo, hi), label in zip(panels, ["soma (mV)", "P(spike)"]):
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>'
                   % (L, top, W - L - R, bot - top))
        out.append('<text x="5" y="%d">%s</text>' % ((top + bot) // 2, label))
        out.append('<text x="%d" y="%d" text-anchor="end">%g</text>' % (L - 3, bot, lo))
        out.append('<text x="%d" y="%d" text-anchor="end">%g</text>' % (L - 3, top + 10, hi))
    out.append(line(t, v_true, panels[0], "#555"))
    out.append(line(t, v_pred, panels[0], "red"))
    out.append(line(t, p_spike, panels[1], "blue"))
    for s in spikes:
        x, y = xy(s, 1.05, panels[1]).split(",")
        out.append('<line x1="%s" x2="%s" y1="%s" y2="%.1f" stroke="black"/>'
                   % (x, x, float(y) - 8, float(y) + 8))
    out.append('<text x="%d" y="%d">time %g .. %g ms; grey: simulated cell, red: ELM, '
               'blue: ELM spike probability, black ticks: true spikes</text>'
               % (L, H - 15, t0, t1))
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a shorter plot (the test suite)")
    ap.add_argument("--out", default="neuronio_example", help="output directory")
    ap.add_argument("--shared", help="the reference data directory (default $ELM_SHARED "
                    "or ../shared beside the repository)")
    args = ap.parse_args()

    shared = args.shared or os.environ.get("ELM_SHARED") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
    ckpt = os.path.join(shared, "reference", "elmneuron-models", "best_elm_neuron",
                        "neuronio_best_model_state.pt")
    sims = sorted(glob.glob(os.path.join(shared, "reference", "neuronio", "*.p")))
    if not os.path.exists(ckpt) or not sims:
        print("SKIP: the reference data is absent (looked for %s and NeuronIO *.p files)" % ckpt)
        return 77
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "best_elm_neuron.elm")
    nio_path = os.path.join(args.out, "neuronio.nio")

    # 1, 2: the two conversions (command-line tools of the elm package).
    run("elm.convert", "official", ckpt, "-o", model_path)
    run("elm.neuronio", "convert", nio_path, sims[0])

    model = elm.Model.load(model_path)
    print("model: %r" % model)

    # 3: the official evaluation protocol, in C.
    t0 = time.perf_counter()
    m = model.evaluate_neuronio(nio_path, "windows")
    print("evaluation (%d simulations, %d output spikes, %.1f s):"
          % (m["n_simulations"], m["n_spikes"], time.perf_counter() - t0))
    print("  spike AUC  %.4f   (official: %.4f)" % (m["auc"], EXPECTED["auc"]))
    print("  soma RMSE  %.3f mV (official: %.3f mV)" % (m["soma_rmse"], EXPECTED["soma_rmse"]))
    print("  soma MAE %.3f mV, explained variance %.2f%%, TP rate at 1%% FP %.3f"
          % (m["soma_mae"], m["soma_explained_variance"], m["tp_at_fp_01"]))
    ok = abs(m["auc"] - EXPECTED["auc"]) < 5e-4 and abs(m["soma_rmse"] - EXPECTED["soma_rmse"]) < 5e-3

    # 4: one simulation, streamed from rest as a simulator would run it
    # (Model.forward from the zero state: x (1, T, 1278) -> y (1, T, 2)).
    nio = NioFile(nio_path)
    counts = [nio.sims[s][2].size for s in range(nio.n_sim)]
    s = max((i for i in range(nio.n_sim) if counts[i] <= 24), key=counts.__getitem__)  # most spikes
    T = 2500 if args.quick else nio.duration
    x, spike, soma = nio.window(s, 0, T)         # x (T, 1278) +-1; spike (T,); soma (T,) mV
    y = model.forward(x[None])[0]                # (T, 2): spike logit, scaled soma
    p_spike = 1.0 / (1.0 + np.exp(-y[:, 0]))
    v_pred = y[:, 1] / 0.1 - 67.7               # back to mV (the training target's scale)
    keep = slice(500, T)                         # the first 500 ms settle from rest
    t = np.arange(T)[keep]
    true_spikes = np.flatnonzero(spike[keep]) + 500
    rmse = float(np.sqrt(np.mean((np.minimum(soma[keep], -55.0) - v_pred[keep]) ** 2)))
    print("simulation %d: %d output spikes in %d..%d ms; ELM spike probability at them "
          "%.3f (mean %.4f elsewhere); soma RMSE %.2f mV (raw, not z-scored)"
          % (s, true_spikes.size, 500, T, p_spike[true_spikes].mean() if true_spikes.size else 0,
             np.delete(p_spike[keep], true_spikes - 500).mean(), rmse))
    files = plot(os.path.join(args.out, "neuronio_sim%d" % s), t, soma[keep], v_pred[keep],
                 p_spike[keep], true_spikes,
                 "official pretrained ELM neuron vs the simulated L5 pyramidal cell "
                 "(NeuronIO simulation %d)" % s)
    print("plot: " + ", ".join(files))
    if not ok:
        print("MISMATCH: the evaluation differs from the official numbers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
