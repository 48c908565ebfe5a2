"""elm_neuronio_evaluate (lib/neuronio_eval.c) against the official ELM
code's NeuronIO numbers (shared/reference/neuronio/official_eval.json, three
pretrained models) and against an independent numpy implementation of the
official protocol (neuronio_eval_utils.py: windows, z-scored soma, and the
scikit-learn 1.1 roc_curve / numpy.interp definitions of the spike metrics),
fed with libelm's own forward. Needs ELM_LIBRARY, the shared reference data
and the converters (python3 -m elm.neuronio / elm.convert)."""

import ctypes
import json
import os
import pickle
import subprocess
import sys

import pytest

from conftest import ROOT, CError

np = pytest.importorskip("numpy")

MODELS = ["best_elm_neuron", "num_memory_20", "num_memory_1"]
SIM_FILE = "sim__saved_InputSpikes__55_outSpikes__8_simulationRuns__6_secDuration__randomSeed_7101.p"
WINDOWS, CONTINUOUS = 0, 1
E_NULL, E_INVALID, E_SHAPE, E_NONFINITE, E_IO, E_FORMAT, E_TRUNCATED = -1, -2, -3, -5, -9, -10, -12

# elm_neuronio_metrics field -> official_eval.json key
FIELDS = [("auc", "AUC"),
          ("tp_at_fp_0025", "TP @ 0.0025 FP"), ("pauc_at_fp_0025", "AUC @ 0.0025 FP"),
          ("tp_at_fp_01", "TP @ 0.0100 FP"), ("pauc_at_fp_01", "AUC @ 0.0100 FP"),
          ("soma_rmse", "soma_RMSE"), ("soma_mae", "soma_MAE"),
          ("soma_explained_variance", "soma_explained_variance_percent")]


class Metrics(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name, _ in FIELDS] + [
        ("n_simulations", ctypes.c_size_t), ("n_spikes", ctypes.c_size_t)]

    def as_dict(self):
        return {name: getattr(self, name) for name, _ in FIELDS}


# ---------------------------------------------------------------------------
# numpy reference of the official definitions


def roc_curve(truth, score):
    """scikit-learn 1.1 roc_curve(drop_intermediate=True): fpr, tpr."""
    order = np.argsort(score, kind="mergesort")[::-1]
    score, truth = score[order], truth[order]
    last_of_group = np.r_[np.where(np.diff(score))[0], truth.size - 1]
    tps = np.cumsum(truth)[last_of_group]
    fps = 1 + last_of_group - tps
    if len(fps) > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    return fps / fps[-1], tps / tps[-1]


def spike_metrics(truth, score):
    fpr, tpr = roc_curve(truth, score)
    out = {"auc": np.trapz(tpr, fpr)}
    grid = np.linspace(0, 1, num=20000)
    on_grid = np.interp(grid, fpr, tpr)
    for fp, tag in ((0.0025, "0025"), (0.01, "01")):
        i = max(int(np.argmin(abs(fpr - fp))), 1)
        out["tp_at_fp_" + tag] = tpr[i]
        j = min(max(1, int(np.argmin(abs(grid - fp)))), grid.size - 1)
        out["pauc_at_fp_" + tag] = on_grid[:j].mean()
    return out


def soma_metrics(true, pred):
    err = true - pred
    return {"soma_explained_variance": 100.0 * (1.0 - np.var(err) / np.var(true)),
            "soma_rmse": np.sqrt(np.mean(err ** 2)), "soma_mae": np.mean(abs(err))}


def official_protocol(predict, X, y_spike, y_soma, continuous=False,
                      burn_in=150, window=500, ignore=500, max_spikes=24):
    """compute_test_predictions + filter_and_extract_core_results.
    predict(x (N, steps, n_in) float32) -> (sigmoid(y0), y1 / 0.1), (N, steps)."""
    N, T, n_in = X.shape
    soma = np.minimum(y_soma, -55.0) + 67.7
    p_hat, v_hat = np.zeros((N, T)), np.zeros((N, T))
    if continuous:
        p_hat[:], v_hat[:] = predict(X)
    else:
        stride = window - burn_in
        n_win = int(2 + (T - window) / stride)
        for k in range(n_win):
            a = k * stride
            x = X[:, a:a + window]
            if x.shape[1] < window:
                x = np.concatenate([x, np.zeros((N, window - x.shape[1], n_in), np.float32)], 1)
            p, v = predict(x)
            t0 = 0 if k == 0 else a + burn_in
            t1 = min(a + window, T)
            p_hat[:, t0:t1] = p[:, t0 - a:t1 - a]
            v_hat[:, t0:t1] = v[:, t0 - a:t1 - a]
    v_hat = (v_hat - v_hat.mean()) / v_hat.std() * soma.std() + soma.mean()
    kept = y_spike.sum(axis=1) <= max_spikes
    out = spike_metrics(y_spike[kept, ignore:].ravel(), p_hat[kept, ignore:].ravel())
    out.update(soma_metrics(soma[kept, ignore:].ravel(), v_hat[kept, ignore:].ravel()))
    return out, int(kept.sum()), int(y_spike[kept, ignore:].sum())


def parse_pickle(path):
    """The official parse_sim_experiment_file: X (N, T, 1278) with the
    synapse types applied (+1 exc, -1 inh), spikes (N, T), soma (N, T) mV."""
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    sims = d["Results"]["listOfSingleSimulationDicts"]
    n_seg = len(d["Params"]["allSegmentsType"])
    T = int(d["Params"]["totalSimDurationInSec"] * 1000)
    X = np.zeros((len(sims), T, 2 * n_seg), np.float32)
    spikes, soma = np.zeros((len(sims), T)), np.zeros((len(sims), T))
    for k, sim in enumerate(sims):
        for base, sign, key in ((0, 1, "exInputSpikeTimes"), (n_seg, -1, "inhInputSpikeTimes")):
            for seg, times in sim[key].items():
                X[k, np.asarray(times, dtype=np.int64), base + seg] = sign
        spikes[k, (sim["outputSpikeTimes"].astype(float) - 0.5).astype(int)] = 1.0
        soma[k] = sim["somaVoltageLowRes"]
    return X, spikes, soma


# ---------------------------------------------------------------------------
# the reference itself, on cases with known answers


def test_reference_roc_matches_sklearn_docstring_example():
    fpr, tpr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1]
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1]


def test_reference_auc_is_mann_whitney_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(20, 400))
        truth = (rng.random(n) < 0.2).astype(float)
        truth[:2] = (0, 1)
        score = rng.integers(0, int(rng.integers(2, 30)), n).astype(float)  # many ties
        pos, neg = score[truth == 1], score[truth == 0]
        mw = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
        assert spike_metrics(truth, score)["auc"] == pytest.approx(mw / (pos.size * neg.size),
                                                                  rel=1e-12)


# ---------------------------------------------------------------------------
# libelm


@pytest.fixture(scope="module")
def nio_lib(libelm):
    lib = libelm.lib
    if not hasattr(lib, "elm_neuronio_evaluate"):
        pytest.skip("this libelm has no elm_neuronio_evaluate")
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    lib.elm_neuronio_evaluate.argtypes = [vp, ctypes.c_char_p, ctypes.c_int,
                                          ctypes.POINTER(Metrics)]
    lib.elm_config_create.argtypes = [ctypes.POINTER(vp)]
    lib.elm_config_set.argtypes = [vp, ctypes.c_int, ctypes.c_double]
    lib.elm_config_free.argtypes = [vp]
    lib.elm_config_free.restype = None
    lib.elm_model_create.argtypes = [vp, ctypes.c_uint64, ctypes.POINTER(vp)]
    lib.elm_model_set_param.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_float),
                                        ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
    return libelm


def evaluate(clib, model, path, mode=WINDOWS):
    """(rc, Metrics) of elm_neuronio_evaluate; the struct is prefilled with
    a sentinel so that an untouched result shows."""
    out = Metrics(*([-7.0] * len(FIELDS) + [777, 777]))
    handle = model.handle if model is not None else None
    rc = clib.lib.elm_neuronio_evaluate(handle, os.fsencode(path) if path else None, mode,
                                        ctypes.byref(out))
    return rc, out


def ok(clib, model, path, mode=WINDOWS):
    rc, out = evaluate(clib, model, path, mode)
    clib._check("elm_neuronio_evaluate", rc)
    return out


def run_module(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"))
    res = subprocess.run([sys.executable, "-m"] + list(args), env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    return res


def _have_module(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def data(shared, tmp_path_factory):
    """The reference simulation file: its pickle, its .nio conversion and
    the official numbers."""
    pickle_path = shared / "reference" / "neuronio" / SIM_FILE
    if not pickle_path.exists():
        pytest.skip("%s is absent" % pickle_path)
    if not _have_module("elm.neuronio"):
        pytest.skip("the NeuronIO converter (elm.neuronio) is absent")
    nio = tmp_path_factory.mktemp("nio") / "ref.nio"
    run_module("elm.neuronio", "convert", str(nio), str(pickle_path))
    official = json.loads((pickle_path.parent / "official_eval.json").read_text())
    return {"pickle": pickle_path, "nio": nio, "official": official}


@pytest.fixture(scope="module")
def parsed(data):
    return parse_pickle(data["pickle"])


@pytest.fixture(scope="module")
def elm_models(official_dir, tmp_path_factory):
    out = {}
    base = tmp_path_factory.mktemp("models")
    for name in MODELS:
        pt = official_dir / name / "neuronio_best_model_state.pt"
        if not pt.exists():
            pytest.skip("%s is absent" % pt)
        out[name] = base / (name + ".elm")
        run_module("elm.convert", "official", str(pt), "-o", str(out[name]))
    return out


@pytest.fixture(scope="module")
def loaded(nio_lib, elm_models):
    models = {name: nio_lib.load(path) for name, path in elm_models.items()}
    yield models
    for m in models.values():
        m.free()


def libelm_predictor(model):
    def predict(x):
        y = model.forward(x)
        with np.errstate(over="ignore"):  # exp(-y0) = inf: a score of 0, as in C
            spike = np.float32(1) / (np.float32(1) + np.exp(-y[..., 0]))
        return spike, np.float32(10) * y[..., 1]
    return predict


def rel(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("name", MODELS)
def test_windows_reproduce_official_numbers(nio_lib, data, loaded, name):
    m = ok(nio_lib, loaded[name], data["nio"])
    official = data["official"][name]
    assert (m.n_simulations, m.n_spikes) == (7, 26)
    worst = {}
    for field, key in FIELDS:
        worst[field] = rel(getattr(m, field), official[key])
        tol = 1e-5 if field == "auc" else 1e-4
        assert worst[field] <= tol, (field, getattr(m, field), official[key])
    print("%s: largest relative difference to official_eval.json %.2e (%s)"
          % (name, max(worst.values()), max(worst, key=worst.get)))


@pytest.mark.parametrize("mode", [WINDOWS, CONTINUOUS])
@pytest.mark.parametrize("name", MODELS)
def test_matches_numpy_protocol_on_libelm_predictions(nio_lib, data, parsed, loaded, name, mode):
    """Same predictions (libelm's forward), the metric definitions computed
    twice: only summation order may differ."""
    X, spikes, soma = parsed
    want, kept, n_spikes = official_protocol(libelm_predictor(loaded[name]), X, spikes, soma,
                                             continuous=mode == CONTINUOUS)
    m = ok(nio_lib, loaded[name], data["nio"], mode)
    assert (m.n_simulations, m.n_spikes) == (kept, n_spikes)
    for field, _ in FIELDS:
        assert getattr(m, field) == pytest.approx(want[field], rel=1e-6, abs=1e-12), field


@pytest.mark.parametrize("name", MODELS)
def test_continuous_close_to_windows(nio_lib, data, loaded, name):
    w = ok(nio_lib, loaded[name], data["nio"], WINDOWS)
    c = ok(nio_lib, loaded[name], data["nio"], CONTINUOUS)
    assert (c.n_simulations, c.n_spikes) == (w.n_simulations, w.n_spikes)
    assert abs(c.auc - w.auc) < 2e-3
    assert abs(c.soma_explained_variance - w.soma_explained_variance) < 1.0
    assert rel(c.soma_rmse, w.soma_rmse) < 0.05
    print("%s windows %s\n%s continuous %s" % (name, w.as_dict(), name, c.as_dict()))


def test_ties_from_saturated_scores(nio_lib, data, parsed, elm_models):
    """A readout scaled up saturates sigmoid(y0) in float32 to exactly 0 and
    1 on most steps: the curve then has few points holding many tied steps
    of both classes, the case where the official definitions matter."""
    with nio_lib.load(elm_models["best_elm_neuron"]) as model:
        w = model.param("readout.weight", 200).reshape(2, 100)
        b = model.param("readout.bias", 2)
        set_param(nio_lib, model, "readout.weight", w * 300)
        set_param(nio_lib, model, "readout.bias", b * 300)
        X, spikes, soma = parsed
        predict = libelm_predictor(model)
        p, _ = predict(X[:2, :1000])
        assert np.unique(p).size < 0.2 * p.size  # mostly ties
        want, kept, n_spikes = official_protocol(predict, X, spikes, soma)
        m = ok(nio_lib, model, data["nio"])
        assert (m.n_simulations, m.n_spikes) == (kept, n_spikes)
        for field, _ in FIELDS:
            assert getattr(m, field) == pytest.approx(want[field], rel=1e-6, abs=1e-12), field


def set_param(clib, model, name, value):
    value = np.ascontiguousarray(value, dtype=np.float32)
    shape = (ctypes.c_int64 * value.ndim)(*value.shape)
    clib._check("elm_model_set_param", clib.lib.elm_model_set_param(
        model.handle, name.encode(), value.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        value.ndim, shape))


def created_model(clib, n_in, n_out):
    lib = clib.lib
    cfg = ctypes.c_void_p()
    clib._check("elm_config_create", lib.elm_config_create(ctypes.byref(cfg)))
    try:
        for key, value in ((2, n_in), (3, n_out), (4, 4)):  # ELM_NUM_INPUT/OUTPUT/MEMORY
            clib._check("elm_config_set", lib.elm_config_set(cfg, key, value))
        handle = ctypes.c_void_p()
        clib._check("elm_model_create", lib.elm_model_create(cfg, 1, ctypes.byref(handle)))
    finally:
        lib.elm_config_free(cfg)
    from conftest import CModel
    return CModel(clib, handle)


def assert_failed(clib, rc, out, code, *words):
    assert rc == code, (rc, clib.lib.elm_last_error())
    message = clib.lib.elm_last_error().decode()
    for w in words:
        assert w in message, message
    assert out.auc == -7.0 and out.n_simulations == 777  # out unchanged


def test_null_arguments(nio_lib, data, loaded):
    model = loaded["num_memory_1"]
    assert_failed(nio_lib, *evaluate(nio_lib, None, data["nio"]), E_NULL)
    assert_failed(nio_lib, *evaluate(nio_lib, model, None), E_NULL)
    rc = nio_lib.lib.elm_neuronio_evaluate(model.handle, os.fsencode(data["nio"]), WINDOWS, None)
    assert rc == E_NULL


def test_bad_mode(nio_lib, data, loaded):
    assert_failed(nio_lib, *evaluate(nio_lib, loaded["num_memory_1"], data["nio"], 7), E_INVALID,
                  "mode")


def test_shape_mismatches(nio_lib, data):
    with created_model(nio_lib, 100, 2) as model:
        assert_failed(nio_lib, *evaluate(nio_lib, model, data["nio"]), E_SHAPE, "100", "1278")
    with created_model(nio_lib, 1278, 3) as model:
        assert_failed(nio_lib, *evaluate(nio_lib, model, data["nio"]), E_SHAPE, "2 outputs", "3")


def test_file_errors_propagate(nio_lib, loaded, tmp_path):
    model = loaded["num_memory_1"]
    missing = tmp_path / "missing.nio"
    assert_failed(nio_lib, *evaluate(nio_lib, model, missing), E_IO, "missing.nio")
    junk = tmp_path / "junk.nio"
    junk.write_bytes(b"not a NeuronIO file" * 10)
    rc, out = evaluate(nio_lib, model, junk)
    assert rc in (E_FORMAT, E_TRUNCATED), rc
    assert_failed(nio_lib, rc, out, rc, "junk.nio")


def test_no_simulation_left(nio_lib, data, loaded, tmp_path):
    """Only the reference file's first simulation, which has 29 output
    spikes (> 24): nothing is evaluated."""
    with open(data["pickle"], "rb") as f:
        d = pickle.load(f, encoding="latin1")
    sims = d["Results"]["listOfSingleSimulationDicts"]
    assert len(sims[0]["outputSpikeTimes"]) > 24
    d["Results"]["listOfSingleSimulationDicts"] = sims[:1]
    one = tmp_path / "busy.p"
    with open(one, "wb") as f:
        pickle.dump(d, f, protocol=2)
    nio = tmp_path / "busy.nio"
    run_module("elm.neuronio", "convert", str(nio), str(one))
    assert_failed(nio_lib, *evaluate(nio_lib, loaded["num_memory_1"], nio), E_INVALID, "24")


def test_nonfinite_predictions(nio_lib, data, elm_models):
    with nio_lib.load(elm_models["num_memory_20"]) as model:
        w = model.param("readout.weight", 40).reshape(2, 20)
        set_param(nio_lib, model, "readout.weight", np.where(w >= 0, 3e38, -3e38))
        assert_failed(nio_lib, *evaluate(nio_lib, model, data["nio"]), E_NONFINITE, "simulation")
