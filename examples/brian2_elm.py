"""An ELM neuron inside a Brian2 network.

    Poisson spike trains (Brian2 PoissonGroup, 1278 synaptic channels:
    639 excitatory + 639 inhibitory, as in NeuronIO)
        |  every 1 ms, a network_operation collects the spikes of that ms
        v
    ELM neuron (libelm, elm.State.step_events): spikes -> y = (spike logit, soma)
        |  the same operation writes p = sigmoid(y0) and the soma voltage
        v  into a one-neuron Brian2 group, which spikes with probability p
    "elm" NeuronGroup (threshold rand() < p)
        |  Brian2 Synapses
        v
    10 leaky integrate-and-fire neurons (Brian2 NeuronGroup)

The ELM is the official pretrained NeuronIO model (Spieler et al. 2024:
a Branch-ELM trained to reproduce a detailed layer-5 pyramidal cell)
when the reference data (../shared, or $ELM_SHARED) is present, converted
from its PyTorch checkpoint without torch; otherwise a fresh random model
with the same shape, which spikes at random.

Brian2 runs with its numpy code generation target: no C++ compiler needed.

    python3 brian2_elm.py [--quick] [--duration MS] [--exc-rate HZ] [--inh-rate HZ]
                          [--model FILE.elm]
"""

import argparse
import os
import sys
import time
import warnings

N_SEG = 639                 # excitatory segments; the next 639 are inhibitory
N_IN = 2 * N_SEG            # 1278 input channels


def load_elm(path):
    """The ELM to embed: a .elm file, the official pretrained model, or a
    fresh model of the same shape (returns (model, description))."""
    import elm
    if path:
        return elm.Model.load(path), path
    shared = os.environ.get("ELM_SHARED") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
    official = os.path.join(shared, "reference", "elmneuron-models", "best_elm_neuron")
    if os.path.isdir(official):
        # The directory holds neuronio_best_model_state.pt and model_config.json.
        return elm.Model.from_official(official), "official pretrained NeuronIO model"
    model = elm.Model(num_input=N_IN, num_output=2, num_memory=20, num_branch=45,
                      synapses_per_branch=100, input_to_synapse_routing="neuronio",
                      seed=1)
    return model, "fresh random Branch-ELM (../shared not found)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 ms (the test suite)")
    ap.add_argument("--duration", type=float, default=2000, help="simulated ms (default 2000)")
    ap.add_argument("--exc-rate", type=float, default=16.0,
                    help="mean Poisson rate per excitatory channel, Hz (default 16)")
    ap.add_argument("--inh-rate", type=float, default=9.0,
                    help="Poisson rate per inhibitory channel, Hz (default 9)")
    ap.add_argument("--model", help="a .elm file to embed instead")
    args = ap.parse_args()
    duration = 200.0 if args.quick else args.duration

    try:
        import numpy as np
        with warnings.catch_warnings():        # Debian's pythran warns on import
            warnings.simplefilter("ignore")
            import brian2 as b2
    except ImportError as e:
        print("SKIP: this example needs numpy and Brian2 (apt-get install python3-brian): %s" % e)
        return 77
    import elm

    try:
        model, what = load_elm(args.model)
    except (OSError, ValueError, elm.ElmError) as e:
        print("could not load the ELM: %s" % e, file=sys.stderr)
        return 1
    if model.num_input != N_IN or model.num_output != 2:
        print("the model must map 1278 NeuronIO inputs to 2 outputs, got %d -> %d"
              % (model.num_input, model.num_output), file=sys.stderr)
        return 1
    state = model.state(1)                  # one stream: the recurrent state of our neuron
    print("ELM: %s, %d parameters, state of %d floats" % (what, model.num_params, state.state_size))

    b2.prefs.codegen.target = "numpy"       # pure Python: no compiler needed
    b2.seed(7)
    b2.start_scope()
    ms, Hz, mV = b2.ms, b2.Hz, b2.mV
    # One clock of 1 ms for everything: the ELM was trained on NeuronIO with
    # 1 ms steps, and the LIF equation below is integrated exactly.
    b2.defaultclock.dt = 1 * ms

    # Input: independent Poisson spike trains near NeuronIO's mean rates
    # (12 Hz exc, 9 Hz inh per segment); the excitatory rate swings +-50%
    # at 2 Hz, so that the neuron has something to follow.
    exc, inh = args.exc_rate * Hz, args.inh_rate * Hz
    inputs = b2.PoissonGroup(
        N_IN, rates="(i < N_SEG) * exc * (1 + 0.5 * sin(2 * pi * 2 * Hz * t)) + (i >= N_SEG) * inh",
        namespace={"N_SEG": N_SEG, "exc": exc, "inh": inh})
    in_mon = b2.SpikeMonitor(inputs)

    # The ELM's outputs, as a Brian2 neuron: p (spike probability this ms)
    # and v_soma are written by the network operation; it spikes with
    # probability p per 1 ms step.
    cell = b2.NeuronGroup(1, "p : 1\nv_soma : volt", threshold="rand() < p")
    cell.v_soma = -67.7 * mV
    elm_mon = b2.SpikeMonitor(cell)
    soma_mon = b2.StateMonitor(cell, ["p", "v_soma"], record=0)

    # Downstream: 10 leaky integrate-and-fire neurons, each receiving the
    # ELM's spikes through a 4 mV synapse plus its own background drive.
    lif = b2.NeuronGroup(10, """dv/dt = (-(v - -70*mV) + I) / (10*ms) : volt
                                I : volt""",
                         threshold="v > -50*mV", reset="v = -70*mV", refractory=2 * ms,
                         method="exact")
    lif.v = -70 * mV
    lif.I = "16*mV + 2*mV * i / 10"          # just below threshold (20 mV) on their own
    syn = b2.Synapses(cell, lif, on_pre="v += 4*mV")
    syn.connect()
    lif_mon = b2.SpikeMonitor(lif)

    # The coupling: every 1 ms, after the input group has spiked (when="end"),
    # feed that millisecond's spikes to the ELM and write its outputs back.
    # The spikes go in as events (elm.State.step_events): channel indices
    # and values, no dense (1, 1278) row to fill and scan.
    y = np.zeros((1, 2), np.float32)
    off = np.zeros(2, np.int64)             # one stream: events [0, off[1])
    seen = [0]                              # spikes of in_mon already fed

    @b2.network_operation(dt=1 * ms, when="end")
    def step_elm():
        idx = np.asarray(in_mon.i[seen[0]:])
        seen[0] += idx.size
        # NeuronIO's input is binary per ms: a channel that spiked twice
        # within the millisecond still counts once
        ch = np.unique(idx).astype(np.int32)
        val = np.where(ch < N_SEG, 1.0, -1.0).astype(np.float32)  # +1 exc., -1 inh.
        off[1] = ch.size
        state.step_events(off, ch, val, out=y)        # one 1 ms step of the ELM
        cell.p = 1.0 / (1.0 + np.exp(-float(y[0, 0])))
        cell.v_soma = (float(y[0, 1]) / 0.1 - 67.7) * mV  # the NeuronIO soma target scale

    net = b2.Network(b2.collect())
    net.add(step_elm)
    print("running %.0f ms of Brian2 %s (numpy target) ..." % (duration, b2.__version__))
    t0 = time.perf_counter()
    net.run(duration * ms)
    wall = time.perf_counter() - t0

    T = duration / 1000.0
    v = np.asarray(soma_mon.v_soma[0] / mV)
    p = np.asarray(soma_mon.p[0])
    print("input: %d Poisson channels, %.2f Hz per channel (%d spikes)"
          % (N_IN, in_mon.num_spikes / N_IN / T, in_mon.num_spikes))
    print("ELM:   mean spike probability %.4f per ms, max %.3f; soma %.1f .. %.1f mV"
          % (p.mean(), p.max(), v.min(), v.max()))
    ts = np.asarray(elm_mon.t / b2.second)
    high = int((np.sin(2 * np.pi * 2 * ts) > 0).sum())   # spikes while the drive is high
    print("ELM output spikes: %d (%.1f Hz): %d while the excitatory drive is above its mean, "
          "%d below" % (elm_mon.num_spikes, elm_mon.num_spikes / T, high, ts.size - high))
    print("LIF neurons: %d spikes (%.1f Hz per neuron)"
          % (lif_mon.num_spikes, lif_mon.num_spikes / 10 / T))
    print("wall time %.1f s for %.0f ms simulated" % (wall, duration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
