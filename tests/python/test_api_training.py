"""elm.training against the C library (elm.h sections 6-8, 10-12): losses
and metrics against numpy, the optimizer's update and state, the tape,
the trainer (a run whose loss decreases, fit with validation, callbacks
that interrupt, KeyboardInterrupt and Ctrl-C, exceptions of Python
sources, checkpoints), training configs, and the NeuronIO evaluation of an
official model against the raw C call."""

import ctypes
import gc
import os
import signal
import subprocess
import sys
import weakref

import pytest

from conftest import ROOT

np = pytest.importorskip("numpy")

from elm import _capi  # noqa: E402
from elm._capi import ElmError  # noqa: E402
from elm.core import Model  # noqa: E402
from elm.data import Dataset  # noqa: E402
from elm.training import (Loss, Optimizer, Tape, Trainer, TrainConfig,  # noqa: E402
                          accuracy, neuronio_evaluate, rmse, roc_auc)


@pytest.fixture(scope="module", autouse=True)
def lib():
    try:
        return _capi.lib()
    except _capi.LibraryNotFound as exc:
        pytest.skip("libelm not found: %s" % exc)


def toy(N=32, T=12, n_in=3, seed=0):
    """A separable classification task: label = sign of the sum of input 0."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, n_in)).astype(np.float32)
    labels = (x[:, :, 0].sum(1) > 0).astype(np.int32)
    return x, labels


def small_model(n_in=3, n_out=2, seed=1):
    return Model(num_input=n_in, num_output=n_out, num_memory=6, seed=seed)


def build(seed=1, lr=2e-2, B=8, T=12, **options):
    model = small_model(seed=seed)
    opt = Optimizer(model, "adam", lr=lr)
    loss = Loss("ce_last", 2)
    return model, opt, loss, Trainer(model, opt, loss, B, T, **options)


def log_softmax(y):
    y = y.astype(np.float64)
    m = y.max(-1, keepdims=True)
    return y - m - np.log(np.exp(y - m).sum(-1, keepdims=True))


# ---------------------------------------------------------------------------
# losses and metrics


def test_ce_last_against_numpy():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((4, 5, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 2], np.int32)
    lengths = np.array([5, 2, 0, 3], np.int64)
    loss = Loss("ce_last", 3)
    assert loss.kind == "ce_last" and loss.classification
    value, dy = loss.compute(y, labels=labels, lengths=lengths)
    counted = [b for b in range(4) if lengths[b] > 0]
    want = -np.mean([log_softmax(y[b, lengths[b] - 1])[labels[b]] for b in counted])
    assert value == pytest.approx(want, rel=1e-5)
    assert dy.shape == y.shape and dy.dtype == np.float32
    p = np.exp(log_softmax(y[0, 4]))
    p[0] -= 1
    np.testing.assert_allclose(dy[0, 4], p / len(counted), rtol=1e-4, atol=1e-7)
    assert not dy[2].any() and not dy[0, :4].any()
    value2, none = loss(y, labels=labels[:, None], lengths=lengths, grad=False)
    assert none is None and value2 == value  # (B, 1) labels as datasets give them


def test_mse_weights_burn_in_against_numpy():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((2, 6, 2)).astype(np.float32)
    target = rng.standard_normal((2, 6, 2)).astype(np.float32)
    loss = Loss("mse", 2, burn_in=2, weights=[0.25, 0.75])
    assert loss.burn_in == 2 and loss.weights == [0.25, 0.75]
    value, _ = loss.compute(y, target=target)
    d2 = (y[:, 2:].astype(np.float64) - target[:, 2:]) ** 2
    assert value == pytest.approx(0.25 * d2[..., 0].mean() + 0.75 * d2[..., 1].mean(), rel=1e-5)
    with pytest.raises(ElmError) as e:
        loss.compute(y, labels=np.zeros((2, 6), np.int32))
    assert e.value.code in (_capi.Status.E_INVALID, _capi.Status.E_NULL)
    with pytest.raises(ValueError):
        loss.weights = [1.0]
    with pytest.raises(ValueError):
        Loss("hinge", 2)


def test_metrics_against_numpy():
    rng = np.random.default_rng(4)
    y = rng.standard_normal((5, 4, 3)).astype(np.float32)
    labels_all = rng.integers(0, 3, (5, 4)).astype(np.int32)
    assert accuracy(y, labels_all) == pytest.approx((y.argmax(-1) == labels_all).mean())
    assert accuracy(y, labels_all, burn_in=2) == pytest.approx(
        (y[:, 2:].argmax(-1) == labels_all[:, 2:]).mean())
    last = labels_all[:, -1]
    assert accuracy(y, last) == pytest.approx((y[:, -1].argmax(-1) == last).mean())
    score = rng.standard_normal(50).astype(np.float32)
    truth = (rng.random(50) < 0.4).astype(np.float32)
    pos, neg = score[truth == 1], score[truth == 0]
    mw = (pos[:, None] > neg[None, :]).mean()
    assert roc_auc(score, truth) == pytest.approx(mw, rel=1e-9)
    a, b = rng.standard_normal((2, 7, 3)).astype(np.float32)
    assert rmse(a, b) == pytest.approx(np.sqrt(np.mean((a.astype(float) - b) ** 2)), rel=1e-6)
    with pytest.raises(ElmError):
        roc_auc(score, np.ones(50, np.float32))  # one class only


# ---------------------------------------------------------------------------
# optimizer and tape


def test_optimizer_settings_and_sgd_step():
    model = small_model()
    opt = Optimizer(model, "sgd", lr=0.5)
    assert opt.kind == "sgd" and opt.get("lr") == 0.5 and opt.get("nesterov") is False
    assert set(opt.settings()) >= {"lr", "momentum", "dampening", "nesterov"}
    with pytest.raises(ElmError) as e:
        opt.set(beta1=0.8)
    assert e.value.code == _capi.Status.E_UNKNOWN_NAME
    with pytest.raises(ElmError) as e:
        opt.set(lr=-1)
    assert e.value.code == _capi.Status.E_INVALID and opt.lr == 0.5
    opt.set(schedule="cosine", total_steps=10)
    assert opt.get("schedule") == "cosine" and opt.get("total_steps") == 10
    opt.set(schedule="constant")
    before = model.get_param("readout.bias").copy()
    w_before = model.get_param("readout.weight").copy()
    opt.freeze("w_y.weight")
    assert opt.is_frozen("readout.weight")
    grad = np.ones(opt.n_params, np.float32)
    norm = opt.step(grad)
    assert norm > 0 and opt.steps == 1
    np.testing.assert_allclose(model.get_param("readout.bias"), before - 0.5, rtol=1e-6)
    np.testing.assert_array_equal(model.get_param("readout.weight"), w_before)


def test_optimizer_state_round_trip():
    model = small_model()
    opt = Optimizer(model, "adamw", lr=1e-2)
    rng = np.random.default_rng(5)
    for _ in range(3):
        opt.step(rng.standard_normal(opt.n_params).astype(np.float32))
    state = opt.save_state()
    assert isinstance(state, bytes) and len(state) > 0
    twin_model = Model.from_bytes(model.to_bytes())
    twin = Optimizer(twin_model, "adamw")
    twin.load_state(state)
    assert twin.steps == 3 and twin.get("lr") == 1e-2
    g = rng.standard_normal(opt.n_params).astype(np.float32)
    opt.step(g.copy())
    twin.step(g.copy())
    np.testing.assert_array_equal(model.get_param("mlp.0.weight"),
                                  twin_model.get_param("mlp.0.weight"))
    with pytest.raises(ElmError) as e:
        Optimizer(twin_model, "sgd").load_state(state)
    assert e.value.code == _capi.Status.E_FORMAT


def _csr(x):
    """(B, T, n) dense -> offsets (B*T + 1,), channels, values (rows b*T + t)."""
    rows = x.reshape(-1, x.shape[-1])
    r, c = np.nonzero(rows)
    off = np.zeros(rows.shape[0] + 1, np.int64)
    np.add.at(off, r + 1, 1)
    return np.cumsum(off), c.astype(np.int32), rows[r, c].astype(np.float32)


def test_tape_and_trainer_events():
    x, labels = toy(N=8, T=10)
    x[np.abs(x) < 0.6] = 0
    off, ch, val = _csr(x)
    model = small_model()
    tape = Tape(model, 8, 10)
    y = tape.forward(x)
    loss = Loss("ce_last", 2)
    _, dy = loss.compute(y, labels=labels)
    g0, dx0 = tape.backward(dy, want_dx=True)
    np.testing.assert_array_equal(tape.forward_events(10, off, ch, val), y)
    g1, dx1 = tape.backward(dy, want_dx=True)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(dx1, dx0)
    bad = ch.copy()
    bad[0] = 99
    with pytest.raises(ElmError) as ei:
        tape.forward_events(10, off, bad, val)
    assert ei.value.status == "ELM_E_INVALID"
    np.testing.assert_array_equal(tape.backward(dy)[0], g0)  # the record stands
    # the trainer: events train exactly as the dense batch, dropout included
    ma, mb = small_model(), small_model()
    ta = Trainer(ma, Optimizer(ma, "adam", lr=1e-2), Loss("ce_last", 2), 8, 10, dropout=0.3)
    tb = Trainer(mb, Optimizer(mb, "adam", lr=1e-2), Loss("ce_last", 2), 8, 10, dropout=0.3)
    for _ in range(3):
        assert ta.step(x, labels=labels) == tb.step_events(10, off, ch, val, labels=labels)
    np.testing.assert_array_equal(ma.parameters(), mb.parameters())


def test_tape_forward_backward():
    model = small_model()
    x, labels = toy(N=4, T=9)
    tape = Tape(model, 4, 16)
    assert tape.memory > 0
    y = tape.forward(x)
    np.testing.assert_allclose(y, model.forward(x), rtol=1e-5, atol=1e-6)
    loss = Loss("ce_last", 2)
    value, dy = loss.compute(y, labels=labels)
    grad, dx = tape.backward(dy, want_dx=True)
    assert grad.shape == (model.num_params,) and dx.shape == x.shape
    grad2, _ = tape.backward(dy, grad=grad.copy())  # adds into grad
    np.testing.assert_allclose(grad2, 2 * grad, rtol=1e-6)
    # dL/dx against a central difference on one input element
    eps = 1e-2
    xp, xm = x.copy(), x.copy()
    xp[1, 3, 0] += eps
    xm[1, 3, 0] -= eps
    num = (loss.compute(model.forward(xp), labels=labels)[0]
           - loss.compute(model.forward(xm), labels=labels)[0]) / (2 * eps)
    assert dx[1, 3, 0] == pytest.approx(num, rel=2e-2, abs=1e-5)
    # a manual training loop with the tape lowers the loss
    opt = Optimizer(model, "adam", lr=5e-2)
    first = value
    for _ in range(30):
        value, dy = loss.compute(tape.forward(x), labels=labels)
        opt.step(tape.backward(dy)[0])
    assert value < first


# ---------------------------------------------------------------------------
# trainer


def test_training_lowers_the_loss():
    x, labels = toy()
    ds = Dataset.from_arrays(x, labels=labels)
    model, opt, loss, tr = build(epochs=6)
    assert tr.get("epochs") == 6 and tr.get("nonfinite") == "stop"
    start = tr.evaluate(ds)["val_loss"]
    events = []
    metrics = tr.fit(ds, ds, callback=lambda p: events.append((p.event, p.epoch, p.loss)))
    assert not tr.interrupted
    assert metrics["epoch"] == 6 and metrics["step"] == 6 * 4
    assert metrics["val_loss"] < 0.8 * start
    assert metrics["val_accuracy"] > 0.8
    assert tr.metric("best_epoch") == metrics["best_epoch"] >= 1
    assert sum(e[0] == "step" for e in events) == 24
    epochs = [e for e in events if e[0] == "epoch"]
    assert [e[1] for e in epochs] == [1, 2, 3, 4, 5, 6]
    assert epochs[-1][2] < epochs[0][2]  # training loss went down
    # step() on a batch
    ds.start_epoch(0)
    batch = ds.next(8)
    assert tr.step_batch(batch) == pytest.approx(tr.metric("last_loss"))


def same_metrics(a, b):
    """Equal dicts, NaN equal to NaN (bit-identical runs)."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def reference_params(epochs=4, **options):
    x, labels = toy()
    ds = Dataset.from_arrays(x, labels=labels)
    model, _, _, tr = build(epochs=epochs, dropout=0.2, **options)
    tr.fit(ds, ds)
    return model.get_param("mlp.0.weight"), tr.metrics()


def test_callback_interrupts_and_fit_resumes_exactly():
    want, want_metrics = reference_params()
    x, labels = toy()
    ds = Dataset.from_arrays(x, labels=labels)
    model, _, _, tr = build(epochs=4, dropout=0.2)
    tr.fit(ds, ds, callback=lambda p: p.event == "step" and p.step == 6)
    assert tr.interrupted and tr.metric("step") == 6 and tr.metric("epoch") == 1
    assert 0 < tr.metric("batch") < 6 and tr.metrics()["batch"] == tr.metric("batch")
    tr.fit(ds, ds)
    assert not tr.interrupted and tr.metric("batch") == 0
    np.testing.assert_array_equal(model.get_param("mlp.0.weight"), want)
    assert same_metrics(tr.metrics(), want_metrics)


def test_keyboard_interrupt_in_callback_interrupts_cleanly():
    want, _ = reference_params()
    x, labels = toy()
    ds = Dataset.from_arrays(x, labels=labels)
    model, _, _, tr = build(epochs=4, dropout=0.2)

    def cb(p):
        if p.step == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tr.fit(ds, ds, callback=cb)
    assert tr.interrupted and tr.metric("step") == 9
    tr.fit(ds, ds)
    np.testing.assert_array_equal(model.get_param("mlp.0.weight"), want)


def test_ctrl_c_during_fit():
    x, labels = toy()
    ds = Dataset.from_arrays(x, labels=labels)
    _, _, _, tr = build(epochs=4)

    def cb(p):
        if p.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C

    with pytest.raises(KeyboardInterrupt):
        tr.fit(ds, ds, callback=cb)
    assert tr.interrupted and 3 <= tr.metric("step") <= 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_callback_exception_and_source_exception_propagate():
    x, labels = toy()
    ds = Dataset.from_arrays(x, labels=labels)
    _, _, _, tr = build(epochs=2)
    with pytest.raises(ZeroDivisionError):
        tr.fit(ds, callback=lambda p: 1 / 0)
    assert tr.interrupted

    class Source:
        T, n_in, n_label = 12, 3, 1

        def __len__(self):
            return 32

        def read(self, epoch, i, xs, target, lab):
            if epoch == 1 and i == 17:
                raise LookupError("sample 17 is gone")
            xs[:] = x[i]
            lab[0] = labels[i]

    src = Dataset.from_python(Source())
    src.prefetch = True
    _, _, _, tr = build(epochs=3)
    with pytest.raises(LookupError, match="sample 17"):
        tr.fit(src, src)
    assert tr.metric("epoch") == 1

    class Broken(Source):
        def read(self, epoch, i, xs, target, lab):
            raise ArithmeticError("broken %d" % epoch)

    with pytest.raises(ArithmeticError, match="broken 0"):
        tr.evaluate(Dataset.from_python(Broken()))


def test_checkpoints_round_trip(tmp_path):
    want, want_metrics = reference_params()
    x, labels = toy()
    ds = Dataset.from_arrays(x, labels=labels)
    model, _, _, tr = build(epochs=4, dropout=0.2)
    path = tmp_path / "run.elm"
    tr.set_checkpoint(path, every=5)
    tr.fit(ds, ds, callback=lambda p: p.step == 7)
    assert path.exists()
    data = tr.save_buffer()
    # a new process would build the same objects and load
    model2, _, _, tr2 = build(seed=99, epochs=1)
    tr2.load(path)
    assert tr2.get("epochs") == 4 and tr2.metric("step") == 7
    tr2.fit(ds, ds)
    np.testing.assert_array_equal(model2.get_param("mlp.0.weight"), want)
    model3, _, _, tr3 = build(seed=5)
    tr3.load_buffer(data)
    tr3.fit(ds, ds)
    np.testing.assert_array_equal(model3.get_param("mlp.0.weight"), want)
    assert same_metrics(tr3.metrics(), want_metrics)
    assert Model.load(path).num_input == 3  # a checkpoint loads as its model
    tr.set_checkpoint(None)
    with pytest.raises(ElmError) as e:
        build(epochs=1)[3].load_buffer(b"not a checkpoint")
    assert e.value.code in (_capi.Status.E_FORMAT, _capi.Status.E_TRUNCATED)


def test_closing_model_closes_training_objects():
    model, opt, loss, tr = build()
    tape = Tape(model, 2, 5)
    model.close()
    assert opt.closed and tr.closed and tape.closed and not loss.closed
    model, opt, loss, tr = build()
    loss.close()
    assert tr.closed and not opt.closed
    with pytest.raises(_capi.ClosedError):
        tr.metric("step")
    # no cycles: everything goes with reference counting alone
    gc.collect()
    gc.disable()
    try:
        model, opt, loss, tr = build()
        refs = [weakref.ref(o) for o in (model, opt, loss, tr)]
        x, labels = toy()
        tr.fit(Dataset.from_arrays(x, labels=labels), callback=lambda p: False)
        del model, opt, loss, tr
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


def test_trainer_options():
    _, _, _, tr = build(nonfinite="skip", select="val_accuracy", patience=2)
    assert tr.get("nonfinite") == "skip" and tr.get("select") == "val_accuracy"
    assert tr.get("patience") == 2 and tr.get("eval_dropout") is False
    with pytest.raises(ValueError):
        tr.set(dropuot=0.1)
    with pytest.raises(ElmError):
        tr.set(dropout=1.5)
    with pytest.raises(ValueError):
        tr.metric("accuracy")
    model = small_model()
    with pytest.raises(ValueError):
        Trainer(model, Optimizer(small_model(), "adam"), Loss("ce_last", 2), 4, 10)


# ---------------------------------------------------------------------------
# training configs

YAML = """
model:
  num_input: 3
  num_output: 2
  num_memory: 6
data:
  source: listops_generate
  batch_size: 8
  batches_per_epoch: 2
  window: 520
  val_fraction: 0.25
  seed: 3
optimizer:
  kind: sgd
  lr: 0.05
  momentum: 0.5
loss:
  kind: ce_last
training:
  epochs: 3
  dropout: 0.1
  nonfinite: skip
"""


def test_train_config_typed_access_and_yaml():
    tc = TrainConfig.from_yaml(YAML)
    assert tc["optimizer.kind"] == "sgd" and tc["optimizer.momentum"] == 0.5
    assert tc["data.batch_size"] == 8 and isinstance(tc["data.batch_size"], int)
    assert tc["data.shuffle"] is True and tc["loss.weights"] == []
    assert tc["model.num_memory"] == 6
    tc["loss.weights"] = [1, 3]
    assert tc["loss.weights"] == [1.0, 3.0]
    tc["training.select"] = "val_accuracy"
    assert tc.get("training.select") == "val_accuracy"
    tc["optimizer.kind"] = _capi.OptimizerKind.ADAM
    assert tc["optimizer.kind"] == "adam"
    with pytest.raises(ElmError) as e:
        tc["optimizer.momentum"]
    assert e.value.code == _capi.Status.E_UNKNOWN_NAME
    with pytest.raises(KeyError):
        tc["data.batchsize"]
    with pytest.raises(ElmError) as e:
        tc["data.batch_size"] = 2.5
    assert e.value.code == _capi.Status.E_INVALID and tc["data.batch_size"] == 8
    text = tc.to_yaml()
    again = TrainConfig.from_yaml(text)
    assert again.to_yaml() == text and again.to_dict() == tc.to_dict()
    assert TrainConfig.key_type("loss.weights") == "list"
    assert len(TrainConfig.keys()) == len(tc.to_dict()) + 3  # the three SGD-only keys
    with pytest.raises(ElmError) as e:
        TrainConfig.from_yaml("model:\n  num_memroy: 3\n")
    assert e.value.code == _capi.Status.E_UNKNOWN_NAME and "2:3" in e.value.message


def test_train_config_model_section_is_a_live_config(tmp_path):
    tc = TrainConfig({"model.num_input": 4})
    mc = tc.model_config
    assert mc.num_input == 4
    mc.num_output = 3
    assert tc["model.num_output"] == 3
    path = tmp_path / "run.yaml"
    tc.save(path)
    assert TrainConfig.load(path)["model.num_output"] == 3
    tc.close()
    assert mc.closed


def test_train_config_build_and_open_data():
    tc = TrainConfig.from_yaml(YAML)
    model = Model(tc.model_config, seed=2)
    opt, loss, tr = tc.build(model, 520)
    assert opt.kind == "sgd" and opt.get("momentum") == 0.5 and opt.get("lr") == 0.05
    assert loss.kind == "ce_last" and tr.batch_size == 8 and tr.T_max == 520
    assert tr.get("epochs") == 3 and tr.get("dropout") == 0.1 and tr.get("nonfinite") == "skip"
    train, val, test = tc.open_data()
    assert test is None and (train.N, val.N) == (12, 4)
    assert train.n_in == 15 and train.T == 520
    assert train.seed == 3 and train.shuffle and not val.shuffle
    with pytest.raises(ElmError) as e:
        tc.build(Model(num_input=3, num_output=2, num_memory=5), 520)  # n_m 5 vs 6
    assert e.value.code == _capi.Status.E_CONFIG


# ---------------------------------------------------------------------------
# NeuronIO

SIM_FILE = ("sim__saved_InputSpikes__55_outSpikes__8_simulationRuns__6_secDuration__"
            "randomSeed_7101.p")


def run_module(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"))
    res = subprocess.run([sys.executable, "-m"] + list(args), env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def neuronio(shared, tmp_path_factory):
    pickle_path = shared / "reference" / "neuronio" / SIM_FILE
    pt = shared / "reference" / "elmneuron-models" / "num_memory_20" / \
        "neuronio_best_model_state.pt"
    if not pickle_path.exists() or not pt.exists():
        pytest.skip("NeuronIO reference data absent")
    base = tmp_path_factory.mktemp("nio")
    run_module("elm.neuronio", "convert", str(base / "ref.nio"), str(pickle_path))
    run_module("elm.convert", "official", str(pt), "-o", str(base / "m.elm"))
    return base / "ref.nio", base / "m.elm"


def test_neuronio_evaluate_equals_the_c_call(neuronio):
    nio, path = neuronio
    model = Model.load(path)
    for mode in ("windows", "continuous"):
        got = neuronio_evaluate(model, nio, mode)
        raw = _capi.NeuronioMetrics()
        rc = _capi.lib().elm_neuronio_evaluate(model._h, str(nio).encode(),
                                               int(_capi.NeuronioMode[mode.upper()]),
                                               ctypes.byref(raw))
        assert rc == 0
        assert got == raw.as_dict()
        assert got["n_simulations"] == 7 and 0.9 < got["auc"] <= 1
    with pytest.raises(ValueError):
        neuronio_evaluate(model, nio, "sliding")


def test_neuronio_windows_train_and_evaluate(neuronio):
    nio, path = neuronio
    model = Model.load(path)
    ds = Dataset.open_neuronio(nio, window_ms=200, samples_per_epoch=4)
    assert (ds.T, ds.n_in, ds.n_target) == (200, 1278, 2)
    b = ds.next(4)
    assert set(np.unique(b.x)) <= {-1.0, 0.0, 1.0}
    opt = Optimizer(model, "adam", lr=1e-4)
    tr = Trainer(model, opt, Loss("neuronio", 2, burn_in=50), 4, 200)
    m = tr.evaluate(ds)
    assert np.isfinite(m["val_loss"]) and np.isfinite(m["val_rmse"])
    tr.fit(ds, epochs=1)
    assert tr.metric("step") == 1
