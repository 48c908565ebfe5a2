"""The NeuronIO converter (elm.neuronio): pickles in the original layout ->
the .nio binary layout, read back with numpy and with libelm
(elm_dataset_open_neuronio through ctypes, ELM_LIBRARY), against an
independent numpy re-statement of the official ELM preprocessing
(neuronio_data_utils.parse_sim_experiment_file and
neuronio_data_loader.preprocess_data)."""

import ctypes
import os
import pickle
import struct
import subprocess
import sys
import zlib

import pytest

np = pytest.importorskip("numpy")

from elm import neuronio  # noqa: E402
from elm.neuronio import NeuronIOError  # noqa: E402

REAL = "sim__saved_InputSpikes__55_outSpikes__8_simulationRuns__6_secDuration__randomSeed_7101.p"
ELM_E = {"NULL": -1, "INVALID": -2, "IO": -9, "FORMAT": -10, "TRUNCATED": -12, "CHECKSUM": -13,
         "VERSION": -14, "LIMIT": -15}


# ---------------------------------------------------------------------------
# Small pickles in the original layout


def sim_dict(D, ex, inh, out_times, soma):
    """One simulation as the NeuronIO script saves it (numpy int64 keys and
    times, float16 output times and soma)."""
    return {
        "exInputSpikeTimes": {np.int64(k): [np.int64(t) for t in v] for k, v in ex.items()},
        "inhInputSpikeTimes": {np.int64(k): [np.int64(t) for t in v] for k, v in inh.items()},
        "outputSpikeTimes": np.asarray(out_times, np.float16),
        "somaVoltageLowRes": np.asarray(soma, np.float16),
        "somaVoltageHighRes": np.zeros(8 * D, np.float16),
        "recordingTimeLowRes": np.arange(D, dtype=np.float32),
    }


def experiment(n_seg, sec, sims):
    return {"Params": {"allSegmentsType": ["basal"] * n_seg, "totalSimDurationInSec": sec,
                       "randomSeed": 1},
            "Results": {"listOfSingleSimulationDicts": sims}}


def write_pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    return str(path)


# n_seg 4 (n_in 8), 1 s (D 1000).
SMALL_EX = {0: [0, 5, 5, 999], 3: [5, 17]}  # repeated 5 in seg 0 collapses
SMALL_INH = {1: [2, 5], 3: [17]}
SMALL_OUT = [0.25, 3.5, 4.0, 4.25, 998.0]  # bins 0, 3, 3, 3, 997


def small_soma(D=1000, shift=0.0):
    return -75.0 + 30.0 * np.sin(np.arange(D) / 37.0 + shift)


@pytest.fixture()
def small(tmp_path):
    sims = [sim_dict(1000, SMALL_EX, SMALL_INH, SMALL_OUT, small_soma()),
            sim_dict(1000, {2: [10]}, {}, [], small_soma(shift=1.0))]
    return write_pickle(tmp_path / "small.p", experiment(4, 1, sims))


def test_small_round_trip(small, tmp_path):
    out = str(tmp_path / "small.nio")
    assert neuronio.convert(out, [small]) == 2
    f = neuronio.NioFile(out)
    assert (f.n_sim, f.duration, f.n_in, f.n_seg) == (2, 1000, 8, 4)
    x, spike, soma = f.window(0, 0, 1000)
    want = np.zeros((1000, 8), np.float32)
    for t in (0, 5, 999):
        want[t, 0] = 1
    want[[5, 17], 3] = 1
    want[[2, 5], 4 + 1] = -1
    want[17, 4 + 3] = -1
    assert np.array_equal(x, want)
    # (t - 0.5) truncated: 0.25 -> 0, 3.5 -> 3, 4.0 -> 3, 4.25 -> 3, 998 -> 997
    assert np.flatnonzero(spike).tolist() == [0, 3, 997]
    assert np.array_equal(soma, np.asarray(small_soma(), np.float16).astype(np.float32))
    x2, spike2, _ = f.window(1, 5, 10)
    assert np.flatnonzero(x2).tolist() == [5 * 8 + 2] and x2.sum() == 1 and spike2.sum() == 0
    assert f.source(1) == (0, 1)
    # a window of the middle equals the slice of the whole
    xa, sa, va = f.window(0, 3, 20)
    assert np.array_equal(xa, x[3:23]) and np.array_equal(sa, spike[3:23])
    assert np.array_equal(va, soma[3:23])


def test_layout_bytes(small, tmp_path):
    """The header and table as docs/datasets/neuronio.md describes them."""
    out = str(tmp_path / "small.nio")
    neuronio.convert(out, [small])
    b = open(out, "rb").read()
    assert b[:8] == b"ELM-NIO\0"
    version, hsize, n_seg, n_in, D, n_sim = struct.unpack_from("<6I", b, 8)
    assert (version, hsize, n_seg, n_in, D, n_sim) == (1, 64, 4, 8, 1000, 2)
    size, table = struct.unpack_from("<QQ", b, 32)
    esize, crc, flags, hcrc = struct.unpack_from("<4I", b, 48)
    assert size == len(b) and table + 2 * 56 == size and esize == 56 and flags == 0
    assert crc == zlib.crc32(b[64:]) and hcrc == zlib.crc32(b[:60])
    tp, ch, E, sp, S, so, fi, si = struct.unpack_from("<6Q2I", b, table)
    assert tp == 64 and tp % 8 == 0 and ch % 8 == 0 and sp % 8 == 0 and so % 8 == 0
    assert E == 8 and S == 3 and (fi, si) == (0, 0)
    ptr = np.frombuffer(b, "<u4", D + 1, tp)
    assert ptr[0] == 0 and ptr[1] == 1 and ptr[3] == 2 and ptr[6] == 5 and ptr[-1] == E
    # sorted by (time, channel): t0 c0 | t2 c5 | t5 c0 c3 c5 | t17 c3 c7 | t999 c0
    assert np.frombuffer(b, "<u2", E, ch).tolist() == [0, 5, 0, 3, 5, 3, 7, 0]
    assert ch == tp + 4008 and sp == ch + 16 and so == sp + 16
    assert np.frombuffer(b, "<i4", S, sp).tolist() == [0, 3, 997]


def test_cli(small, tmp_path):
    out = str(tmp_path / "cli.nio")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "elm.neuronio", "convert", out, small, small],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "elm.neuronio", "info", out],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "4 simulations of 1000 ms" in r.stdout
    assert "file 1 sim   1" in r.stdout
    r = subprocess.run([sys.executable, "-m", "elm.neuronio", "info", small],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "bad magic" in r.stderr


# ---------------------------------------------------------------------------
# Refused input


def bad_case(tmp_path, name, mutate):
    sims = [sim_dict(1000, SMALL_EX, SMALL_INH, SMALL_OUT, small_soma())]
    obj = experiment(4, 1, sims)
    mutate(obj, obj["Results"]["listOfSingleSimulationDicts"][0])
    return write_pickle(tmp_path / (name + ".p"), obj)


BAD = {
    "no_params": (lambda o, s: o.pop("Params"), "missing key 'Params'"),
    "no_results": (lambda o, s: o["Results"].pop("listOfSingleSimulationDicts"),
                   "missing key 'listOfSingleSimulationDicts'"),
    "no_soma": (lambda o, s: s.pop("somaVoltageLowRes"), "missing key 'somaVoltageLowRes'"),
    "no_ex": (lambda o, s: s.pop("exInputSpikeTimes"), "missing key 'exInputSpikeTimes'"),
    "soma_length": (lambda o, s: s.update(somaVoltageLowRes=np.zeros(999, np.float16)),
                    "expected 1000 samples"),
    "soma_nan": (lambda o, s: s["somaVoltageLowRes"].__setitem__(7, np.nan), "NaN or Inf at sample 7"),
    "segment": (lambda o, s: s["exInputSpikeTimes"].update({4: [1]}), "segment index 4 out of range"),
    "segment_negative": (lambda o, s: s["inhInputSpikeTimes"].update({-1: [1]}),
                         "segment index -1 out of range"),
    "time_negative": (lambda o, s: s["exInputSpikeTimes"].update({2: [3, -1]}),
                      "negative spike time -1"),
    "time_late": (lambda o, s: s["inhInputSpikeTimes"].update({2: [1000]}),
                  "spike time 1000 ms is not below the duration 1000"),
    "time_fraction": (lambda o, s: s["exInputSpikeTimes"].update({2: [3.5]}), "not a whole ms"),
    "time_nan": (lambda o, s: s["exInputSpikeTimes"].update({2: [float("nan")]}), "not a whole ms"),
    "out_negative": (lambda o, s: s.update(outputSpikeTimes=np.array([-1.0], np.float16)),
                     "negative spike time"),
    "out_nan": (lambda o, s: s.update(outputSpikeTimes=np.array([np.nan], np.float16)),
                "NaN or Inf spike time"),
    "out_late": (lambda o, s: s.update(outputSpikeTimes=np.array([1000.5], np.float32)),
                 "not below the duration"),
    "duration": (lambda o, s: o["Params"].update(totalSimDurationInSec=1.0005), "expected an integer"),
    "sims_not_list": (lambda o, s: o["Results"].update(listOfSingleSimulationDicts=5), "not a list"),
    "empty": (lambda o, s: o["Results"]["listOfSingleSimulationDicts"].clear(), "no simulations"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_refuses_bad_input(tmp_path, name):
    mutate, message = BAD[name]
    path = bad_case(tmp_path, name, mutate)
    out = tmp_path / "out.nio"
    out.write_bytes(b"old")
    with pytest.raises(NeuronIOError) as e:
        neuronio.convert(str(out), [path])
    assert message in str(e.value) and path in str(e.value)
    # atomic: the old file is untouched and no temporary is left behind
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name + ".p", "out.nio"])


def test_refuses_mismatched_files(tmp_path, small):
    other = write_pickle(tmp_path / "other.p", experiment(
        4, 2, [sim_dict(2000, {}, {}, [], np.zeros(2000))]))
    with pytest.raises(NeuronIOError, match="differ from"):
        neuronio.convert(str(tmp_path / "o.nio"), [small, other])


class Evil:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("payload", ["call", "ordered"])
def test_refuses_forbidden_global(tmp_path, payload):
    import collections
    inner = Evil() if payload == "call" else collections.OrderedDict(a=1)
    obj = experiment(4, 1, [sim_dict(1000, {}, {}, [], small_soma())])
    obj["Params"]["extra"] = inner
    path = write_pickle(tmp_path / "evil.p", obj)
    with pytest.raises(NeuronIOError, match="refusing the pickle global") as e:
        neuronio.convert(str(tmp_path / "evil.nio"), [path])
    assert path in str(e.value)
    assert not (tmp_path / "evil.nio").exists()


def test_refuses_garbage_pickle(tmp_path):
    good = tmp_path / "g.p"
    write_pickle(good, experiment(4, 1, [sim_dict(1000, {}, {}, [], small_soma())]))
    cut = tmp_path / "cut.p"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(NeuronIOError, match="not a readable pickle"):
        neuronio.convert(str(tmp_path / "x.nio"), [str(cut)])
    with pytest.raises(NeuronIOError, match="cannot read"):
        neuronio.convert(str(tmp_path / "x.nio"), [str(tmp_path / "absent.p")])


# ---------------------------------------------------------------------------
# The C reader through ctypes


class Dataset:
    def __init__(self, lib, path, window, n):
        self.lib = lib
        self.h = ctypes.c_void_p()
        rc = lib.elm_dataset_open_neuronio(os.fsencode(path), window, n, ctypes.byref(self.h))
        self.rc = rc
        self.message = lib.elm_last_error().decode() if rc else ""
        self.window = window

    def set(self, key, value):
        assert self.lib.elm_dataset_set(self.h, key, ctypes.c_double(value)) == 0

    def next(self, B, n_in):
        x = np.zeros((B, self.window, n_in), np.float32)
        tg = np.zeros((B, self.window, 2), np.float32)
        count = ctypes.c_size_t()
        fp = ctypes.POINTER(ctypes.c_float)
        rc = self.lib.elm_dataset_next(self.h, B, x.ctypes.data_as(fp), tg.ctypes.data_as(fp),
                                       None, None, ctypes.byref(count))
        assert rc == 0, self.lib.elm_last_error().decode()
        return x, tg, count.value

    def free(self):
        if self.h:
            self.lib.elm_dataset_free(self.h)
            self.h = None


@pytest.fixture(scope="module")
def clib():
    path = os.environ.get("ELM_LIBRARY")
    if not path or not os.path.exists(path):
        pytest.skip("ELM_LIBRARY is not set (path of libelm.so): C-side checks skipped")
    lib = ctypes.CDLL(path)
    if not hasattr(lib, "elm_dataset_open_neuronio"):
        pytest.skip("%s has no elm_dataset_open_neuronio" % path)
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    lib.elm_last_error.restype = ctypes.c_char_p
    lib.elm_dataset_open_neuronio.argtypes = [ctypes.c_char_p, sz, sz, ctypes.POINTER(vp)]
    lib.elm_dataset_next.argtypes = [vp, sz, vp, vp, vp, vp, ctypes.POINTER(sz)]
    lib.elm_dataset_free.argtypes = [vp]
    lib.elm_dataset_free.restype = None
    lib.elm_dataset_set.argtypes = [vp, ctypes.c_int, ctypes.c_double]
    return lib


def official_preprocessing(path):
    """An independent numpy statement of what the official ELM code does to
    one pickle (parse_sim_experiment_file + preprocess_data, in float32 as
    torch does): X (n_sim, D, n_in) with the +1/-1 synapse types applied,
    y_spike (n_sim, D), y_soma target (n_sim, D), raw soma (n_sim, D)."""
    with open(path, "rb") as fh:
        d = pickle.load(fh, encoding="latin1")  # the file is the project's own
    n_seg = len(d["Params"]["allSegmentsType"])
    D = d["Params"]["totalSimDurationInSec"] * 1000
    sims = d["Results"]["listOfSingleSimulationDicts"]
    X = np.zeros((len(sims), D, 2 * n_seg), bool)
    y_spike = np.zeros((len(sims), D))
    y_soma = np.zeros((len(sims), D))
    for k, s in enumerate(sims):
        for base, key in ((0, "exInputSpikeTimes"), (n_seg, "inhInputSpikeTimes")):
            for seg, times in s[key].items():
                for t in times:
                    X[k, t, base + seg] = True
        y_spike[k, (s["outputSpikeTimes"].astype(float) - 0.5).astype(int)] = 1.0
        y_soma[k] = s["somaVoltageLowRes"]
    types = np.concatenate([np.ones(n_seg), -np.ones(n_seg)]).astype(np.float32)
    Xf = X.astype(np.float32) * types
    soma32 = y_soma.astype(np.float32)
    target = soma32.copy()
    target[target > np.float32(-55.0)] = np.float32(-55.0)
    target = (target - np.float32(-67.7)) * np.float32(0.1)
    return Xf, y_spike.astype(np.float32), target, soma32


def test_small_through_c(clib, small, tmp_path):
    out = str(tmp_path / "small.nio")
    neuronio.convert(out, [small])
    ds = Dataset(clib, out, 1000, 4)
    assert ds.rc == 0, ds.message
    X, y_spike, y_soma, _ = official_preprocessing(small)
    x, tg, count = ds.next(4, 8)
    ds.free()
    assert count == 4
    # D - window = 0: every sample is a whole simulation
    for i in range(4):
        k = 0 if np.array_equal(x[i], X[0]) else 1
        assert np.array_equal(x[i], X[k])
        assert np.array_equal(tg[i, :, 0], y_spike[k])
        assert np.array_equal(tg[i, :, 1], y_soma[k])


def locate(tg_soma, soma_target, W):
    """(sim, start) of a window from its soma targets (unique in real data)."""
    hits = []
    for k in range(soma_target.shape[0]):
        win = np.lib.stride_tricks.sliding_window_view(soma_target[k], 8)
        cand = np.flatnonzero((win == tg_soma[:8]).all(axis=1))
        hits += [(k, int(t)) for t in cand
                 if t + W <= soma_target.shape[1]
                 and np.array_equal(soma_target[k, t:t + W], tg_soma)]
    return hits


@pytest.fixture(scope="module")
def real(shared, tmp_path_factory):
    path = shared / "reference" / "neuronio" / REAL
    if not path.exists():
        pytest.skip("%s is absent" % path)
    out = str(tmp_path_factory.mktemp("nio") / "real.nio")
    assert neuronio.convert(out, [str(path)]) == 8
    return str(path), out


def test_real_file_matches_official(real):
    pickle_path, out = real
    X, y_spike, y_soma, soma = official_preprocessing(pickle_path)
    f = neuronio.NioFile(out)
    assert (f.n_sim, f.duration, f.n_in) == (8, 6000, 1278)
    assert [f.sims[s][2].size for s in range(8)] == y_spike.sum(axis=1).astype(int).tolist()
    assert int(y_spike.sum()) == 55  # the file name says 55 output spikes
    for s in range(8):
        x, spike, v = f.window(s, 0, 6000)
        assert np.array_equal(x, X[s]), s
        assert np.array_equal(spike, y_spike[s]), s
        assert np.array_equal(v, soma[s]), s
        assert np.array_equal(neuronio.soma_target(v), y_soma[s]), s


def test_real_file_soma_target_is_torchs(real):
    """The float32 cap/bias/scale equals torch's preprocess_data bit for bit."""
    torch = pytest.importorskip("torch")
    pickle_path, out = real
    _, _, target, soma = official_preprocessing(pickle_path)
    y = torch.from_numpy(soma.astype(np.float64)).float()
    y[y > -55.0] = -55.0
    y = (y - -67.7) * (1 / 10)
    assert np.array_equal(y.numpy(), target)


def test_real_windows_through_c(clib, real):
    pickle_path, out = real
    X, y_spike, y_soma, _ = official_preprocessing(pickle_path)
    W = 500
    ds = Dataset(clib, out, W, 48)
    assert ds.rc == 0, ds.message
    ds.set(2, 11)  # ELM_DATASET_SEED
    starts = []
    for _ in range(3):
        x, tg, count = ds.next(16, 1278)
        assert count == 16
        for i in range(16):
            hits = locate(tg[i, :, 1], y_soma, W)
            assert hits, "sample %d is no window of the file" % i
            ok = [(k, t) for k, t in hits if np.array_equal(x[i], X[k, t:t + W])
                  and np.array_equal(tg[i, :, 0], y_spike[k, t:t + W])]
            assert ok, "sample %d: inputs or spikes differ from the official preprocessing" % i
            starts.append(ok[0])
    ds.free()
    # the official loader's range: 500 <= start < 6000 - W
    assert all(500 <= t < 6000 - W for _, t in starts)
    assert len({k for k, _ in starts}) >= 5


# ---------------------------------------------------------------------------
# Malformed .nio files, refused by both readers with the file name


def damaged(tmp_path, good, name, edit, fix_crc=True):
    b = bytearray(open(good, "rb").read())
    b = edit(b) or b
    if fix_crc and len(b) >= 64:
        struct.pack_into("<I", b, 52, zlib.crc32(bytes(b[64:])))
        struct.pack_into("<I", b, 60, zlib.crc32(bytes(b[:60])))
    p = tmp_path / name
    p.write_bytes(bytes(b))
    return str(p)


def table_of(b):
    return struct.unpack_from("<Q", b, 40)[0]


MALFORMED = {
    "truncated.nio": (lambda b: b[:-100], "TRUNCATED", False),
    "magic.nio": (lambda b: b.__setitem__(slice(0, 3), b"XYZ"), "FORMAT", False),
    "crc.nio": (lambda b: b.__setitem__(100, b[100] ^ 0x10), "CHECKSUM", False),
    "version.nio": (lambda b: struct.pack_into("<I", b, 8, 9), "VERSION", True),
    "offset.nio": (lambda b: struct.pack_into("<Q", b, table_of(b) + 8,
                                              struct.unpack_from("<Q", b, table_of(b) + 8)[0] + 8),
                   "FORMAT", True),
    "channel.nio": (lambda b: struct.pack_into("<H", b, struct.unpack_from("<Q", b, table_of(b) + 8)[0],
                                               8), "FORMAT", True),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files(tmp_path, small, clib, name):
    good = str(tmp_path / "good.nio")
    neuronio.convert(good, [small])
    edit, code, fix = MALFORMED[name]
    path = damaged(tmp_path, good, name, edit, fix)
    with pytest.raises(NeuronIOError) as e:
        neuronio.NioFile(path)
    assert path in str(e.value)
    ds = Dataset(clib, path, 100, 4)
    assert ds.rc == ELM_E[code], ds.message
    assert path in ds.message
    assert not ds.h
