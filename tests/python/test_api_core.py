"""The ctypes bindings (elm._capi, elm._buffers, elm.core) against libelm
(ELM_LIBRARY): loading, every prototype, buffers with and without numpy,
Config/Model/State, files and metadata, errors carrying the C message,
closed objects, the official checkpoints, and leaks."""

import array
import ctypes
import gc
import json
import os
import pathlib
import re
import subprocess
import sys
import weakref

import pytest

np = pytest.importorskip("numpy")

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def E():
    """The elm package with libelm loaded (skipped without ELM_LIBRARY)."""
    path = os.environ.get("ELM_LIBRARY")
    if not path or not os.path.exists(path):
        pytest.skip("ELM_LIBRARY is not set to an existing libelm.so")
    import elm
    from elm import _capi
    _capi.lib()
    return elm


@pytest.fixture
def capi(E):
    from elm import _capi
    return _capi


def tiny_config(E, **kw):
    values = dict(num_input=6, num_output=3, num_memory=4, mlp_hidden_size=8)
    values.update(kw)
    return E.Config(**values)


@pytest.fixture
def model(E):
    with E.Model(tiny_config(E), seed=7) as m:
        yield m


def rand_x(B, T, n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (B, T, n)).astype(np.float32)


# ---------------------------------------------------------------------------
# Import, loading, prototypes


def test_import_elm_loads_neither_libelm_nor_numpy():
    code = ("import sys, elm, elm.convert, elm.elmfile\n"
            "assert 'elm._capi' not in sys.modules, 'libelm wrapper imported'\n"
            "assert 'numpy' not in sys.modules, 'numpy imported'\n"
            "assert not any('libelm' in l for l in open('/proc/self/maps')), 'loaded'\n"
            "print(elm.__version__)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    import elm
    assert out.stdout.strip() == elm.__version__


def test_every_exported_symbol_has_a_prototype(capi):
    text = (ROOT / "lib" / "libelm.map").read_text()
    exported = set(re.findall(r"^\s+(elm_\w+);", text, re.M))
    assert exported, "no symbols read from libelm.map"
    assert exported == set(capi.PROTOTYPES), (
        "missing: %s, extra: %s" % (sorted(exported - set(capi.PROTOTYPES)),
                                    sorted(set(capi.PROTOTYPES) - exported)))
    header = (ROOT / "include" / "elm.h").read_text()
    declared = set(re.findall(r"ELM_API\s+[\w\s\*]+?\b(elm_\w+)\s*\(", header))
    assert declared == set(capi.PROTOTYPES)
    assert capi.missing_symbols() == ()
    lib = capi.lib()
    for name, (restype, argtypes) in capi.PROTOTYPES.items():
        fn = getattr(lib, name)
        assert fn.argtypes == argtypes and fn.restype == restype, name


def test_enums_match_the_header(capi):
    header = (ROOT / "include" / "elm.h").read_text()
    values = {m.group(1): int(m.group(2)) for m in
              re.finditer(r"\b(ELM_[A-Z0-9_]+)\s*=\s*(-?\d+)", header)}
    assert len(values) > 100
    for name, value in values.items():
        assert getattr(capi, name) == value, name
    assert capi.ELM_E_SHAPE == -3 and isinstance(capi.ELM_E_SHAPE, capi.Status)
    assert capi.ELM_SIZE_STATE == 10 and capi.ELM_ROUTING_NEURONIO == 2
    assert capi.ELM_MAX_DIMS == 4 and capi.ELM_ALL_STREAMS == -1
    assert capi.ELM_LISTOPS_VOCAB == 15
    # structs: sizes as C lays them out
    assert ctypes.sizeof(capi.NeuronioMetrics) == 8 * 8 + 2 * ctypes.sizeof(ctypes.c_size_t)
    assert ctypes.sizeof(capi.Source) == 5 * ctypes.sizeof(ctypes.c_size_t) + 5 * ctypes.sizeof(
        ctypes.c_void_p)


def test_version_and_library_info(E, capi):
    import elm
    # the package and the library it loads are the same release
    assert capi.version() == tuple(int(p) for p in elm.__version__.split("."))
    assert capi.version_string() == elm.__version__
    assert E.core.gemm_info()
    assert capi.strerror(capi.ELM_E_SHAPE)
    assert os.path.samefile(capi.library_path(), os.environ["ELM_LIBRARY"])


def _run_loader(env_extra, code):
    env = {k: v for k, v in os.environ.items() if k != "ELM_LIBRARY"}
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT / "bindings" / "python")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, cwd="/")


def test_library_search_order_and_errors(E, tmp_path):
    # ELM_LIBRARY pointing nowhere: a clear error listing where it looked
    out = _run_loader({"ELM_LIBRARY": str(tmp_path / "nope.so")},
                      "import elm\ntry:\n elm.Config()\nexcept OSError as e:\n print(e)")
    assert out.returncode == 0, out.stderr
    assert "libelm could not be loaded" in out.stdout and "nope.so" in out.stdout
    assert "ELM_LIBRARY" in out.stdout
    # not libelm at all
    out = _run_loader({"ELM_LIBRARY": ctypes.util.find_library("c") or "libc.so.6"},
                      "import elm\ntry:\n elm.Config()\nexcept OSError as e:\n print(e)")
    assert "not libelm" in out.stdout, out.stdout + out.stderr
    # the candidates without ELM_LIBRARY: package dir, build tree, system
    out = _run_loader({}, "from elm import _capi\nfor w, p in _capi.candidates(): print(w, '|', p)")
    lines = out.stdout.splitlines()
    assert lines[-1] == "system | libelm.so.0"
    wheres = [l.split(" | ")[0] for l in lines]
    assert wheres == sorted(wheres, key=["package directory", "build tree",
                                         "system (find_library)", "system"].index)


def test_library_copied_into_the_package_is_found(E, tmp_path):
    import shutil
    pkg = tmp_path / "elm"
    shutil.copytree(ROOT / "bindings" / "python" / "elm", pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "libelm.so*"))
    shutil.copy(os.environ["ELM_LIBRARY"], pkg / "libelm.so.0")
    env = {k: v for k, v in os.environ.items() if k != "ELM_LIBRARY"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c",
                          "from elm import _capi; _capi.lib(); print(_capi.library_path())"],
                         env=env, capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(pkg / "libelm.so.0")


# ---------------------------------------------------------------------------
# Buffers


def test_buffers_numpy_rules(E):
    from elm import _buffers as b
    a = np.zeros((2, 3, 4), np.float32)
    buf = b.as_input(a, "float32", (None, None, 4))
    assert buf.obj is a and buf.ptr == a.ctypes.data and buf.shape == (2, 3, 4)  # zero-copy
    conv = b.as_input(np.zeros((2, 3, 4)), "float32", (2, 3, 4))  # float64: converted
    assert conv.obj.dtype == np.float32
    f = np.asfortranarray(np.ones((3, 4), np.float32))
    assert b.as_input(f, "float32", (3, 4)).obj.flags.c_contiguous
    assert b.as_input([[1, 2], [3, 4]], "int64", (2, 2)).obj.dtype == np.int64
    with pytest.raises(TypeError, match="floating-point data where int32"):
        b.as_input(np.zeros(3), "int32")
    with pytest.raises(TypeError, match="complex"):
        b.as_input(np.zeros(3, complex), "float32")
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, \?, 4\), got \(2, 3\)"):
        b.as_input(np.zeros((2, 3), np.float32), "float32", (None, None, 4), "x")
    # outputs are never converted
    with pytest.raises(TypeError, match="outputs are not converted"):
        b.as_output(np.zeros((2, 3)), "float32", (2, 3))
    with pytest.raises(ValueError, match="not C-contiguous"):
        b.as_output(np.zeros((3, 2), np.float32).T, "float32", (2, 3))
    ro = np.zeros((2, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        b.as_output(ro, "float32", (2, 3))
    with pytest.raises(ValueError, match=r"expected shape \(2, 4\)"):
        b.as_output(np.zeros((2, 3), np.float32), "float32", (2, 4))


def test_buffers_without_numpy(E):
    """The array.array / memoryview / bytearray paths, used when numpy is
    absent (exercised explicitly here)."""
    from elm import _buffers as b
    arr = array.array("f", range(12))
    buf = b.as_input(arr, "float32", (None, 3, 4))
    assert buf.shape == (1, 3, 4) and buf.n == 12
    # zero-copy: the address is the array's own
    assert buf.ptr == arr.buffer_info()[0]
    with pytest.raises(ValueError, match="ambiguous"):
        b.as_input(arr, "float32", (None, None, 4))
    mv = memoryview(arr).cast("B").cast("f", (2, 1, 6))
    assert b.as_input(mv, "float32", (None, None, 6)).shape == (2, 1, 6)
    assert b.as_input(bytearray(48), "float32", (3, 4)).n == 12
    assert b.as_input(bytes(48), "float32", (3, 4)).n == 12  # read-only: copied
    with pytest.raises(ValueError, match="read-only"):
        b.as_output(bytes(48), "float32", (3, 4))
    with pytest.raises(TypeError, match="format 'd' is not float32"):
        b.as_input(array.array("d", [1.0]), "float32")
    with pytest.raises(ValueError, match="12 elements"):
        b.as_input(arr, "float32", (2, 5))
    with pytest.raises(TypeError, match="expected an array"):
        b.as_input(object(), "float32")
    assert b.as_input(array.array("q", [1, 2]), "int64").n == 2
    assert b.as_input(array.array("i", [1, 2]), "int32").n == 2
    out = b.empty((2, 3), "float32", use_numpy=False)
    assert isinstance(out, array.array) and out.typecode == "f" and len(out) == 6
    assert isinstance(b.zeros((4,), "int64", use_numpy=False), array.array)


def test_no_numpy_round_trip_through_the_library(E, model):
    """Model/State with array.array in and out, equal to the numpy path."""
    x = rand_x(2, 5, 6, seed=3)
    ref = model.forward(x)
    xa = array.array("f", x.ravel().tolist())
    mv = memoryview(xa).cast("B").cast("f", (2, 5, 6))
    y = model.forward(mv)
    assert isinstance(y, array.array) and len(y) == 2 * 5 * 3
    np.testing.assert_array_equal(np.frombuffer(y, np.float32).reshape(2, 5, 3), ref)
    with model.state(2) as st:
        y2 = st.forward(xa)  # flat: B known from the state, T inferred
        assert isinstance(y2, array.array)
        np.testing.assert_array_equal(np.frombuffer(y2, np.float32), ref.ravel())
        snap = st.get(use_numpy=False)
        assert isinstance(snap, array.array) and len(snap) == 2 * model.state_size
        st.reset()
        st.set(snap)
        np.testing.assert_array_equal(np.frombuffer(st.get(use_numpy=False), np.float32),
                                      np.frombuffer(snap, np.float32))
        yt = st.step(array.array("f", x[:, 0].ravel().tolist()))
        assert isinstance(yt, array.array) and len(yt) == 6
    w = model.get_param("readout.weight", use_numpy=False)
    assert isinstance(w, array.array) and len(w) == 12
    model.set_param("readout.weight", w)
    idx, mask = model.get_routing(use_numpy=False)
    assert list(idx) == list(range(6)) and list(mask) == [1] * 6
    # output into a caller's buffer
    out = array.array("f", bytes(4 * 30))
    assert model.forward(mv, out=out) is out
    np.testing.assert_array_equal(np.frombuffer(out, np.float32), ref.ravel())


# ---------------------------------------------------------------------------
# Config


def test_config_get_set_by_name_and_attribute(E, capi):
    c = E.Config(num_input=1278, num_output=2, formulation="v2", mlp_activation="silu",
                 learn_memory_tau=True, tau_b_value=7.5)
    assert c.num_input == 1278 and c["num_output"] == 2
    assert c.formulation == capi.Formulation.V2
    assert c.mlp_activation == capi.Activation.SILU
    assert c.learn_memory_tau is True
    assert c.tau_s_value == 7.5  # the reference alias tau_b_value
    assert isinstance(c.num_memory, int) and isinstance(c.lambda_value, float)
    c.num_memory = 50
    c[capi.Param.LAMBDA] = 3
    c["input_to_synapse_routing"] = "neuronio"
    assert c.num_memory == 50 and c.lambda_value == 3.0
    assert c.input_to_synapse_routing == capi.Routing.NEURONIO
    assert c.to_dict()["formulation"] == "v2"
    assert "num_memory" in c and "nonsense" not in c
    assert len(c.keys()) == 17
    with pytest.raises(AttributeError, match="unknown hyper-parameter 'num_memroy'"):
        c.num_memroy = 3
    with pytest.raises(KeyError):
        c["num_memroy"]
    with pytest.raises(E.ElmError) as ei:
        c.num_memory = -1
    assert ei.value.status == "ELM_E_INVALID" and ei.value.code == -2
    assert "num_memory" in str(ei.value) or "NUM_MEMORY" in str(ei.value)
    assert c.num_memory == 50  # unchanged
    with pytest.raises(ValueError, match="'v3' is not one of v1, v2"):
        c.formulation = "v3"
    lo, hi = E.Config.bounds("num_memory")
    assert lo >= 1 and hi > lo
    c.close()


def test_config_copy_validate_yaml(E, tmp_path):
    c = E.Config(num_input=6, num_output=3, num_memory=4)
    d = c.copy()
    d.num_memory = 9
    assert c.num_memory == 4 and d.num_memory == 9 and c != d
    assert c.validate() is c
    text = c.to_yaml()
    assert "num_memory: 4" in text
    assert E.Config.from_yaml(text) == c
    c.save_yaml(tmp_path / "c.yaml")
    assert E.Config.load_yaml(tmp_path / "c.yaml") == c
    assert E.Config.from_yaml('{"num_input": 6, "num_output": 3, "num_memory": 4}') == c
    with pytest.raises(E.ElmError, match="num_memroy") as ei:
        E.Config.from_yaml("num_input: 6\nnum_memroy: 3\n")
    assert ei.value.status == "ELM_E_UNKNOWN_NAME"
    # inconsistent: branches without routing
    bad = E.Config(num_input=6, num_output=3, num_branch=3, num_synapse_per_branch=1)
    with pytest.raises(E.ElmError) as ei:
        bad.validate()
    assert ei.value.status == "ELM_E_CONFIG" and ei.value.message
    with pytest.raises(E.ElmError) as ei:
        E.Model(bad)
    assert ei.value.status == "ELM_E_CONFIG"


# ---------------------------------------------------------------------------
# Model


def test_model_sizes_params_and_routing(E, model):
    assert (model.num_input, model.num_output, model.num_memory) == (6, 3, 4)
    assert model.num_branch == 6 and model.num_synapse == 6 and model.hidden_size == 8
    info = model.param_info()
    assert [p.name for p in info][:3] == ["w_s_proto", "tau_s", "tau_m_proto"]
    assert sum(p.numel for p in info) == model.num_params
    assert sum(p.numel for p in info if p.trainable) == model.num_trainable
    assert model.param_shape("w_y.weight") == (3, 4)  # official alias
    w = model.get_param("readout.weight")
    assert w.shape == (3, 4) and w.dtype == np.float32
    np.testing.assert_array_equal(model.params["w_y.weight"], w)
    model.params["readout.weight"] = w * 2
    np.testing.assert_array_equal(model.get_param("readout.weight"), w * 2)
    flat = model.parameters()
    assert flat.shape == (model.num_params,)
    sd = model.state_dict()
    assert list(sd) == model.param_names() == list(model.params)
    off = 0
    for p in info:
        np.testing.assert_array_equal(flat[off:off + p.numel], sd[p.name].ravel())
        off += p.numel
    other = E.Model(tiny_config(E), seed=99)
    assert not np.array_equal(other.parameters(), flat)
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.parameters(), flat)
    # the whole buffer at once; a refused one changes nothing
    third = E.Model(tiny_config(E), seed=7)
    third.set_parameters(flat.tolist())
    np.testing.assert_array_equal(third.parameters(), flat)
    bad = flat.copy()
    bad[-1] = np.nan
    with pytest.raises(E.ElmError) as ei:
        third.set_parameters(bad)
    assert ei.value.status == "ELM_E_NONFINITE" and "'readout.bias'" in str(ei.value)
    np.testing.assert_array_equal(third.parameters(), flat)
    with pytest.raises(ValueError, match="values"):
        third.set_parameters(flat[:-1])
    # errors with the C message, nothing changed
    with pytest.raises(E.ElmError, match=r"expects shape \(3, 4\), got \(4, 3\)") as ei:
        model.set_param("readout.weight", np.zeros((4, 3), np.float32))
    assert ei.value.status == "ELM_E_SHAPE" and ei.value.function.startswith("elm_model_set_param")
    bad = np.array(w)
    bad[1, 1] = np.inf
    with pytest.raises(E.ElmError) as ei:
        model.set_param("readout.weight", bad)
    assert ei.value.status == "ELM_E_NONFINITE"
    np.testing.assert_array_equal(model.get_param("readout.weight"), w * 2)
    with pytest.raises(E.ElmError) as ei:
        model.get_param("nonsense")
    assert ei.value.status == "ELM_E_UNKNOWN_NAME" and "nonsense" in ei.value.message
    with pytest.raises(KeyError):
        model.params["nonsense"]
    idx, mask = model.get_routing()
    assert idx.dtype == np.int64 and mask.dtype == np.uint8
    with pytest.raises(E.ElmError):  # no routing in this model
        model.set_routing(idx, mask)
    other.close()


def test_model_with_routing(E):
    cfg = E.Config(num_input=10, num_output=2, num_memory=3, num_branch=4,
                   num_synapse_per_branch=3, input_to_synapse_routing="random")
    with E.Model(cfg, seed=1) as m:
        idx, mask = m.get_routing()
        assert idx.shape == (12,) and ((idx >= 0) & (idx < 10)).all()
        new = np.arange(12, dtype=np.int64) % 10
        m.set_routing(new, np.ones(12, np.uint8))
        np.testing.assert_array_equal(m.get_routing()[0], new)
        with pytest.raises(E.ElmError):
            m.set_routing(np.full(12, 10, np.int64), np.ones(12, np.uint8))
        with pytest.raises(ValueError, match=r"idx: expected shape \(12,\)"):
            m.set_routing(np.zeros(11, np.int64), np.ones(12, np.uint8))


def test_model_deterministic_init_and_forward(E):
    c = tiny_config(E)
    a, b = E.Model(c, seed=5), E.Model(c, seed=5)
    np.testing.assert_array_equal(a.parameters(), b.parameters())
    x = rand_x(3, 20, 6)
    y = a.forward(x)
    assert y.shape == (3, 20, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(a(x), y)
    out = np.empty((3, 20, 3), np.float32)
    assert a.forward(x, out=out) is out
    np.testing.assert_array_equal(out, y)
    # float64 input is converted (documented rule)
    np.testing.assert_array_equal(a.forward(x.astype(np.float64)), y)
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, \?, 6\), got \(3, 20, 5\)"):
        a.forward(np.zeros((3, 20, 5), np.float32))
    with pytest.raises(ValueError, match=r"out: expected shape \(3, 20, 3\)"):
        a.forward(x, out=np.empty((3, 20, 2), np.float32))
    xn = x.copy()
    xn[1, 4, 2] = np.nan
    with pytest.raises(E.ElmError, match=r"x\[1, 4, 2\]") as ei:
        a.forward(xn)
    assert ei.value.status == "ELM_E_NONFINITE" and ei.value.code == -5
    assert ei.value.function == "elm_model_forward"
    a.close(), b.close()


def test_model_from_dict_and_kwargs(E):
    m = E.Model({"num_input": 3, "num_output": 1}, seed=0, num_memory=5)
    assert m.num_memory == 5
    m2 = E.Model(m.config, num_memory=6)
    assert m2.num_memory == 6 and m.config.num_memory == 5
    with pytest.raises(TypeError):
        E.Model("nonsense")
    with pytest.raises(E.ElmError) as ei:  # num_input unset
        E.Model(E.Config())
    assert ei.value.message


def test_model_files_bytes_and_meta(E, model, tmp_path):
    model.meta["dataset"] = "toy"
    model.meta.update(origin="test", note="ünïcode")
    assert model.meta.keys() == ["dataset", "origin", "note"]
    assert model.meta["note"] == "ünïcode" and len(model.meta) == 3
    del model.meta["origin"]
    assert "origin" not in model.meta and model.meta.get("origin") is None
    with pytest.raises(KeyError):
        model.meta["origin"]
    with pytest.raises(TypeError):
        model.meta["n"] = 3
    path = tmp_path / "m.elm"
    model.save(path)
    data = model.to_bytes()
    assert path.read_bytes() == data
    x = rand_x(2, 8, 6)
    for m in (E.Model.load(path), E.Model.from_bytes(data), E.Model.from_bytes(bytearray(data)),
              model.copy()):
        with m:
            np.testing.assert_array_equal(m.forward(x), model.forward(x))
            assert m.meta.to_dict() == {"dataset": "toy", "note": "ünïcode"}
    import pickle
    m = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(m.parameters(), model.parameters())
    # damaged files: the C message names the problem
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(E.ElmError) as ei:
        E.Model.from_bytes(bytes(bad))
    assert ei.value.status == "ELM_E_CHECKSUM"
    with pytest.raises(E.ElmError) as ei:
        E.Model.from_bytes(data[:40])
    assert ei.value.status in ("ELM_E_TRUNCATED", "ELM_E_FORMAT")
    with pytest.raises(E.ElmError) as ei:
        E.Model.load(tmp_path / "absent.elm")
    assert ei.value.status == "ELM_E_IO" and "absent.elm" in str(ei.value)


# ---------------------------------------------------------------------------
# State


def test_state_step_forward_reset_get_set(E, model):
    x = rand_x(3, 12, 6, seed=1)
    ref = model.forward(x)
    with model.state(3) as st:
        assert st.batch == 3 and st.state_size == model.state_size
        assert not st.get().any()
        np.testing.assert_allclose(st.forward(x[:, :5]), ref[:, :5], rtol=1e-5, atol=1e-6)
        snap = st.get()
        assert snap.shape == (3, model.state_size) and snap.any()
        ys = [st.step(x[:, t]) for t in range(5, 12)]
        np.testing.assert_allclose(np.stack(ys, 1), ref[:, 5:], rtol=1e-5, atol=1e-6)
        # restore and replay
        st.set(snap)
        np.testing.assert_allclose(st.forward(x[:, 5:]), ref[:, 5:], rtol=1e-5, atol=1e-6)
        st.reset(1)
        s = st.get()
        assert not s[1].any() and s[0].any()
        st.reset()
        assert not st.get().any()
        # traces
        tr = st.forward_traced(x)
        np.testing.assert_allclose(tr["y"], ref, rtol=1e-5, atol=1e-6)
        assert tr["syn"].shape == (3, 12, 6) and tr["branch"].shape == (3, 12, 6)
        assert tr["mem"].shape == (3, 12, 4)
        # copies are independent
        c = st.copy()
        st.reset()
        assert c.get().any()
        c.close()
        # errors, state unchanged
        before = st.get()
        with pytest.raises(ValueError, match=r"x: expected shape \(3, 6\), got \(2, 6\)"):
            st.step(x[:2, 0])
        bad = x[:, 0].copy()
        bad[2, 3] = np.inf
        with pytest.raises(E.ElmError) as ei:
            st.step(bad)
        assert ei.value.status == "ELM_E_NONFINITE"
        nan_state = before.copy()
        nan_state[0, 0] = np.nan
        with pytest.raises(E.ElmError) as ei:
            st.set(nan_state)
        assert ei.value.status == "ELM_E_NONFINITE"
        with pytest.raises(E.ElmError) as ei:
            st.reset(3)
        assert ei.value.status == "ELM_E_INVALID"
        np.testing.assert_array_equal(st.get(), before)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        model.state(0)


def test_key_tables_agree_with_libelm(E, capi):
    """The binding's key tables (integer, bool, enum keys and enum names)
    say what libelm's own tables say (elm_param_type, elm_param_value_name)."""
    from elm import core
    lib = capi.lib()
    for p in core.Param:
        t = ctypes.c_int()
        assert lib.elm_param_type(int(p), ctypes.byref(t)) == 0
        want = ("enum" if p in core._ENUM_KEYS else "bool" if p in core._BOOL_KEYS
                else "integer" if p in core._INT_KEYS else "number")
        assert {1: "number", 2: "integer", 3: "bool", 4: "enum"}[t.value] == want, p
        if p in core._ENUM_NAMES:
            for name, value in core._ENUM_NAMES[p].items():
                assert lib.elm_param_value_name(int(p), int(value)).decode() == name
    # the official spelling goes through libelm's table
    cfg = E.Config(num_input=4, num_output=1, input_to_synapse_routing="random_routing",
                   num_branch=4)
    assert cfg["input_to_synapse_routing"] == capi.Routing.RANDOM
    with pytest.raises(ValueError, match="not one of"):
        E.Config(num_input=4, num_output=1, mlp_activation="tanh")


def _to_events(x):
    """Dense rows (R, n_in) -> CSR offsets, channels, values."""
    rows, cols = np.nonzero(x)
    off = np.zeros(x.shape[0] + 1, np.int64)
    np.add.at(off, rows + 1, 1)
    return np.cumsum(off), cols.astype(np.int32), x[rows, cols].astype(np.float32)


def test_state_events(E, model):
    x = rand_x(3, 12, 6, seed=2)
    x[np.abs(x) < 0.5] = 0  # sparse, some rows empty
    ref = model.forward(x)
    off, ch, val = _to_events(x.reshape(3 * 12, 6))
    with model.state(3) as st:
        # sorted channels: the dense call's bits
        np.testing.assert_array_equal(st.forward_events(12, off, ch, val), ref)
        # steps: the dense steps' bits
        st.reset()
        dense = [st.step(x[:, t]) for t in range(12)]
        st.reset()
        ys = [st.step_events(*_to_events(x[:, t])) for t in range(12)]
        np.testing.assert_array_equal(np.stack(ys, 1), np.stack(dense, 1))
        # plain lists work too; values None means spikes
        st.reset()
        spikes = (x != 0).astype(np.float32)
        o2, c2, _ = _to_events(spikes.reshape(36, 6))
        np.testing.assert_array_equal(st.forward_events(12, o2.tolist(), c2.tolist()),
                                      model.forward(spikes))
        # errors: the state is unchanged
        before = st.get()
        bad = ch.copy()
        bad[-1] = 6
        with pytest.raises(E.ElmError) as ei:
            st.forward_events(12, off, bad, val)
        assert ei.value.status == "ELM_E_INVALID" and "outside [0, n_in = 6)" in str(ei.value)
        badv = val.copy()
        badv[0] = np.nan
        with pytest.raises(E.ElmError) as ei:
            st.forward_events(12, off, ch, badv)
        assert ei.value.status == "ELM_E_NONFINITE"
        with pytest.raises(ValueError, match="offsets"):
            st.forward_events(11, off, ch, val)
        with pytest.raises(ValueError, match="need offsets"):
            st.forward_events(12, off, ch[:-1], val)
        np.testing.assert_array_equal(st.get(), before)


def test_state_v2_traces(E):
    cfg = E.Config(num_input=8, num_output=2, num_memory=3, formulation="v2",
                   num_branch=4, num_synapse_per_branch=2, input_to_synapse_routing="random",
                   mlp_activation="silu")
    with E.Model(cfg, seed=2) as m, m.state(2) as st:
        tr = st.forward_traced(rand_x(2, 6, 8))
        assert tr["syn"] is None and tr["branch"].shape == (2, 6, 4)


# ---------------------------------------------------------------------------
# Lifetimes: closed objects, ownership, leaks


def test_closed_objects_raise_instead_of_crashing(E, capi):
    m = E.Model(tiny_config(E))
    st = m.state(2)
    c = E.Config(num_input=2, num_output=1)
    c.close()
    c.close()  # idempotent
    with pytest.raises(capi.ClosedError, match="Config is closed"):
        c.num_input
    with pytest.raises(ValueError):
        E.Model(c)
    m.close()  # closes the state first: no dangling pointer into the model
    assert st.closed and m.closed
    for call in (lambda: st.step(np.zeros((2, 6), np.float32)), st.get, st.reset,
                 lambda: m.forward(rand_x(1, 2, 6)), m.to_bytes, lambda: m.meta["a"],
                 lambda: m.state(1), lambda: m.get_param("tau_s"), lambda: m.num_input):
        with pytest.raises(capi.ClosedError):
            call()
    st.close()
    m.close()
    with pytest.raises(ValueError):
        with m:
            pass
    assert "closed" in repr(m) and "closed" in repr(st)


def test_state_keeps_its_model_alive(E):
    st = E.Model(tiny_config(E), seed=3).state(1)
    gc.collect()
    assert not st.model.closed
    y = st.forward(rand_x(1, 4, 6))
    assert y.shape == (1, 4, 3)
    ref = weakref.ref(st.model)
    del st
    gc.collect()
    assert ref() is None  # model collected after its last state


def _count_frees(E, capi, n, make):
    """Create n objects through make(), counting their frees."""
    freed = []
    for _ in range(n):
        obj = make()
        weakref.finalize(obj, freed.append, 1)
        del obj
    gc.collect()
    return len(freed)


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_no_leaks(E, capi):
    cfg = tiny_config(E)
    base = E.Model(cfg, seed=1)
    x = rand_x(2, 3, 6)
    # warm-up, then RSS must stay flat over 10000 create/free cycles
    for _ in range(200):
        E.Model(cfg, seed=1).state(2).forward(x)
    gc.collect()
    before = _rss_kib()
    for i in range(10000):
        with E.Config(num_input=6, num_output=3) as c:
            pass
        m = E.Model(cfg, seed=i)
        st = m.state(2)
        st.forward(x)
        if i % 2:
            m.close()  # explicit, closes the state
        # else: both freed by reference counting (__del__)
        del st, m
        base.state(4).close()
    gc.collect()
    grown = _rss_kib() - before
    assert grown < 8 * 1024, "RSS grew by %d KiB over 10000 cycles" % grown
    # every handle is freed exactly once
    L = capi.lib()
    calls = []
    real = L.elm_state_free

    class Counting:
        def __call__(self, ptr):
            calls.append(ptr)
            real(ptr)
    L.elm_state_free = Counting()
    try:
        states = [base.state(1) for _ in range(50)]
        for s in states[:25]:
            s.close()
            s.close()
        del states
        gc.collect()
    finally:
        L.elm_state_free = real
    assert len(calls) == 50 and len(set(calls)) <= 50
    base.close()


# ---------------------------------------------------------------------------
# The official checkpoints and the reference fixtures


FIXTURES = ["tiny_v1_relu", "tiny_v2_silu_branch", "branch_neuronio_routing"]


def _fixture_model(E, case_dir, tmp_path):
    """The fixture's state dict written as an official checkpoint."""
    from elm import torchzip
    from elm.torchzip import Tensor
    meta = json.loads((case_dir / "config.json").read_text())
    sd = {}
    for name in meta["params"]:
        a = np.load(case_dir / ("param.%s.npy" % name))
        dtype = {"float32": "float32", "int64": "int64", "bool": "bool"}[str(a.dtype)]
        vals = a.astype(np.uint8) if a.dtype == bool else a
        sd[name] = Tensor(dtype, a.shape, vals.ravel().tolist())
    folder = tmp_path / case_dir.name
    folder.mkdir()
    torchzip.save(sd, folder / "model.pt")
    (folder / "model_config.json").write_text(json.dumps(meta["config"]))
    return folder, meta


@pytest.mark.parametrize("case", FIXTURES)
def test_from_official_reproduces_the_fixtures(E, fixtures_dir, tmp_path, case):
    case_dir = fixtures_dir / case
    folder, meta = _fixture_model(E, case_dir, tmp_path)
    x, y_ref = np.load(case_dir / "x.npy"), np.load(case_dir / "y.npy")
    for src in (folder, folder / "model.pt"):
        with E.Model.from_official(src) as m:
            assert m.formulation.name.lower() == meta["formulation"]
            np.testing.assert_allclose(m.forward(x), y_ref, rtol=1e-4, atol=1e-5)
            with m.state(x.shape[0]) as st:
                np.testing.assert_allclose(st.forward(x), y_ref, rtol=1e-4, atol=1e-5)
            assert m.meta["converter"] == "libelm elm.convert"
            for name in meta["params"]:
                if name in ("input_to_synapse_indices", "valid_indices_mask"):
                    continue
                np.testing.assert_array_equal(m.params[name],
                                              np.load(case_dir / ("param.%s.npy" % name)))


def test_official_best_model(E, official_dir, fixtures_dir, tmp_path):
    best = official_dir / "best_elm_neuron"
    if not (best / "neuronio_best_model_state.pt").exists():
        pytest.skip("%s has no checkpoint" % best)
    case = fixtures_dir / "pretrained_best_elm_neuron"
    x, y_ref = np.load(case / "x.npy"), np.load(case / "y.npy")
    with E.Model.from_official(best) as m:
        assert (m.num_input, m.num_output) == (1278, 2)
        np.testing.assert_allclose(m.forward(x), y_ref, rtol=1e-4, atol=1e-5)
        idx, mask = m.get_routing()
        np.testing.assert_array_equal(idx, np.load(case / "param.input_to_synapse_indices.npy"))
        np.testing.assert_array_equal(mask.astype(bool),
                                      np.load(case / "param.valid_indices_mask.npy"))
        assert "published_metrics" in m.meta
        m.save(tmp_path / "best.elm")
        with E.Model.load(tmp_path / "best.elm") as again:
            np.testing.assert_array_equal(again.forward(x), m.forward(x))
    with pytest.raises(ValueError, match="expected one .pt"):
        E.Model.from_official(tmp_path)


def test_works_without_numpy(E):
    """A process where numpy cannot be imported: buffers in, array.array out."""
    code = """
import sys
sys.modules['numpy'] = None  # import numpy -> ImportError
import array, elm
from elm import _buffers
assert not _buffers.HAVE_NUMPY
m = elm.Model(elm.Config(num_input=3, num_output=2, num_memory=4), seed=1)
x = array.array('f', [0.1 * i for i in range(2 * 5 * 3)])
y = m.forward(memoryview(x).cast('B').cast('f', (2, 5, 3)))
assert isinstance(y, array.array) and len(y) == 20
st = m.state(2)
y2 = st.forward(x)
assert list(y2) == list(y)
snap = st.get()
assert isinstance(snap, array.array) and len(snap) == 2 * m.state_size
w = m.params['readout.weight']
assert isinstance(w, array.array) and len(w) == 8
m.params['readout.weight'] = [[0.5] * 4, [0.25] * 4]
assert list(m.params['readout.weight']) == [0.5] * 4 + [0.25] * 4
cell, s = elm.ELMCell(m), None
ys = []
for t in range(5):
    xt = array.array('f', [x[(b * 5 + t) * 3 + c] for b in range(2) for c in range(3)])
    yt, s = cell(xt, s)
    ys.append(yt)
y3 = m.forward(memoryview(x).cast('B').cast('f', (2, 5, 3)))
for t in range(5):
    for b in range(2):
        for o in range(2):
            assert abs(ys[t][b * 2 + o] - y3[(b * 5 + t) * 2 + o]) < 1e-5
try:
    m.forward(x)
except ValueError as e:
    assert 'ambiguous' in str(e)
else:
    raise AssertionError('flat buffer with unknown B and T accepted')
print('ok')
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_concurrent_states_on_one_model(E, model):
    import threading
    x = rand_x(2, 50, 6, seed=9)
    ref = model.forward(x)
    errors = []

    def run():
        try:
            with model.state(2) as st:
                for _ in range(20):
                    st.reset()
                    np.testing.assert_allclose(st.forward(x), ref, rtol=1e-5, atol=1e-6)
        except Exception as e:  # pragma: no cover
            errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
