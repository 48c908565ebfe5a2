"""Swapping torch.nn.LSTMCell for an ELM neuron in an existing loop.

The simulation below was written against the call convention of
torch.nn.LSTMCell, wrapped with a readout:

    y_t, state = cell(x_t, state)     # x_t (B, n_in) -> y_t (B, n_out)

where ``state`` is None at the start of a trial (zeros) and is otherwise
whatever the previous call returned. elm.nn.ELMCell has exactly that call,
so switching from the LSTM to an ELM is the one line marked SWITCH below.

    python3 lstm_dropin.py [--quick] [--lstm]

Needs the elm package (bindings/python) and libelm (ELM_LIBRARY=path, or
an installed libelm.so.0); the LSTM variant also needs torch.
"""

import argparse
import sys
import time

import numpy as np

import elm

N_IN, N_OUT, BATCH = 8, 2, 4   # 8 input channels, 2 outputs, 4 agents at once


def lstm_cell(n_in, n_out):
    """torch.nn.LSTMCell (hidden 32) + a linear readout, as a function
    (x_t, state) -> (y_t, state) on numpy arrays; state = (h, c)."""
    import torch
    torch.manual_seed(0)
    cell, readout = torch.nn.LSTMCell(n_in, 32), torch.nn.Linear(32, n_out)

    @torch.no_grad()
    def step(x, state=None):
        h, c = cell(torch.from_numpy(x), state)
        return readout(h).numpy(), (h, c)
    return step


def elm_cell(n_in, n_out):
    """An ELM neuron with the same call. A trained neuron would come from
    elm.Model.load("neuron.elm") instead of a fresh random model."""
    model = elm.Model(num_input=n_in, num_output=n_out, num_memory=20, seed=0)
    return elm.nn.ELMCell(model)   # state: a (B, state_size) float32 snapshot


def simulate(cell, steps, rng):
    """The simulation: BATCH agents get a noisy multi-channel sine stimulus
    (1 step = 1 ms) and move by integrating their first output. Written
    only against the (x_t, state) -> (y_t, state) convention."""
    t = np.arange(steps)[:, None] * 0.02 + 0.8 * np.arange(N_IN)[None, :]   # (T, n_in)
    position = np.zeros(BATCH)
    state = None                                  # a new trial: zero state
    for k in range(steps):
        x = (0.5 + 0.5 * np.sin(t[k]) + 0.1 * rng.standard_normal((BATCH, N_IN))).astype(np.float32)
        y, state = cell(x, state)                 # y (BATCH, N_OUT)
        position += 1e-3 * y[:, 0]
        if k == steps // 2:
            saved = state                         # a state is a value: keep it
    return position, saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (the test suite)")
    ap.add_argument("--lstm", action="store_true", help="run the torch LSTMCell instead")
    args = ap.parse_args()

    make_cell = elm_cell   # SWITCH: lstm_cell for torch.nn.LSTMCell
    if args.lstm:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("SKIP: the LSTM variant needs torch")
            return 77
        make_cell = lstm_cell

    try:
        cell = make_cell(N_IN, N_OUT)
    except (OSError, elm.ElmError) as e:     # libelm not found / refused
        print("could not create the cell: %s" % e, file=sys.stderr)
        return 1
    steps = 200 if args.quick else 2000
    print("simulating %d agents for %d ms with %s" % (BATCH, steps, make_cell.__name__))
    t0 = time.perf_counter()
    position, saved = simulate(cell, steps, np.random.default_rng(0))
    dt = time.perf_counter() - t0
    print("final positions:", " ".join("%+.4f" % p for p in position))
    if make_cell is elm_cell:
        print("state snapshot at t = %d ms: shape %s, |state|_max %.3f"
              % (steps // 2, saved.shape, float(np.abs(saved).max())))
    print("%.1f us per step of %d streams (Python loop included)" % (1e6 * dt / steps, BATCH))
    return 0


if __name__ == "__main__":
    sys.exit(main())
