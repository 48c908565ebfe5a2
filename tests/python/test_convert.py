"""Import of the official checkpoints (elm.convert, elm.torchzip) and export
to .pt / .npz, checked against the reference fixtures, libelm (ELM_LIBRARY)
and, where installed, torch."""

import collections
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile

import pytest

from elm import convert, elmfile, torchzip
from elm.convert import ConvertError
from elm.torchzip import Tensor, TorchFileError

np = pytest.importorskip("numpy")

OFFICIAL_MODELS = ["best_elm_neuron"] + ["num_memory_%d" % n for n in
                                         (1, 2, 3, 5, 7, 10, 15, 20, 25, 30, 40, 50, 75, 100)]
FIXTURES = ["tiny_v1_relu", "tiny_v2_silu_branch", "branch_neuronio_routing",
            "pretrained_best_elm_neuron"]


def official_pt(official_dir, name):
    path = official_dir / name / "neuronio_best_model_state.pt"
    if not path.exists():
        pytest.skip("%s is absent" % path)
    return path


def np_tensor(a):
    """numpy array -> torchzip.Tensor."""
    dtype = {"float32": "float32", "int64": "int64", "bool": "bool"}[str(a.dtype)]
    vals = a.astype(np.uint8) if a.dtype == bool else a
    return Tensor(dtype, a.shape, vals.ravel().tolist())


def fixture_state_dict(case_dir):
    cfg = json.loads((case_dir / "config.json").read_text())
    sd = collections.OrderedDict()
    for name in cfg["params"]:
        sd[name] = np_tensor(np.load(case_dir / ("param.%s.npy" % name)))
    return sd, cfg


def write_case(tmp_path, sd, cfg, name="model"):
    """A .pt of sd with its config json beside it, as the official layout."""
    pt = tmp_path / (name + ".pt")
    torchzip.save(sd, pt)
    (tmp_path / (name + ".model_config.json")).write_text(json.dumps(cfg))
    return pt


def random_spikes(n_in, T, B=1, seed=0, density=0.01):
    rng = np.random.default_rng(seed)
    x = (rng.random((B, T, n_in)) < density).astype(np.float32)
    x[..., n_in // 2:] *= -1  # excitatory then inhibitory halves
    return x


# --------------------------------------------------------------------------
# A restricted unpickler: malicious checkpoints run nothing


def torch_like_zip(pkl, extra=(("archive/data/0", b"\0" * 8),)):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/version", "3\n")
        for name, data in extra:
            zf.writestr(name, data)
    return buf.getvalue()


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _malicious(side):
    cmd = "touch %s" % side
    yield "posix.system", pickle.dumps(_Reduce(os.system, (cmd,)), protocol=2)
    yield "builtins.eval", (b"\x80\x02cbuiltins\neval\nX" +
                            struct.pack("<I", len("__import__('os').system('%s')" % cmd)) +
                            ("__import__('os').system('%s')" % cmd).encode() + b"\x85R.")
    yield "subprocess.Popen", pickle.dumps(_Reduce(subprocess.Popen, (["touch", str(side)],)),
                                           protocol=4)
    # hidden after a valid tensor inside an OrderedDict
    good = torchzip.encode({"w": Tensor("float32", (2,), [1, 2])})
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        pkl = zf.read("archive/data.pkl")
    evil = pickle.dumps(_Reduce(os.system, (cmd,)), protocol=2)[2:-1]  # no PROTO/STOP
    yield "posix.system", pkl[:-2] + b"X\x04\x00\x00\x00evil" + evil + b"u."


def test_malicious_pickles_are_refused_and_run_nothing(tmp_path):
    side = tmp_path / "side_effect"
    for i, (refused, pkl) in enumerate(_malicious(side)):
        path = tmp_path / ("evil%d.pt" % i)
        path.write_bytes(torch_like_zip(pkl))
        with pytest.raises(TorchFileError, match="refused to load global '%s'" % refused):
            torchzip.load(path)
        assert not side.exists()
        # and through the converter and its command line
        (tmp_path / "model_config.json").write_text('{"num_input": 2, "num_output": 1}')
        with pytest.raises(ConvertError, match=refused):
            convert.official_to_elm(path, None, tmp_path / "out.elm")
        assert convert.main(["official", str(path), "-o", str(tmp_path / "out.elm")]) == 1
        assert not side.exists()
        assert not (tmp_path / "out.elm").exists()


def test_other_malformed_checkpoints(tmp_path):
    cases = {
        "persistent id": b"\x80\x02(X\x04\x00\x00\x00evilX\x01\x00\x00\x000tQ.",
        "not a state dict": pickle.dumps([1, 2, 3], protocol=2),
        "truncated": pickle.dumps({"a": 1}, protocol=2)[:-3],
    }
    for what, pkl in cases.items():
        with pytest.raises(TorchFileError):
            torchzip.load_state_dict(io.BytesIO(torch_like_zip(pkl)))
    with pytest.raises(TorchFileError, match="not a zip archive"):
        torchzip.load(io.BytesIO(b"\x80\x02legacy torch file"))
    with pytest.raises(TorchFileError, match="data.pkl"):
        torchzip.load(io.BytesIO(_zip_without_pickle()))
    # a storage record shorter than its declared element count
    good = torchzip.encode({"w": Tensor("float32", (4,), [1, 2, 3, 4])})
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        recs = {n: zf.read(n) for n in zf.namelist()}
    recs["archive/data/0"] = recs["archive/data/0"][:12]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in recs.items():
            zf.writestr(n, d)
    with pytest.raises(TorchFileError, match="has 12 bytes"):
        torchzip.load(io.BytesIO(buf.getvalue()))


def _zip_without_pickle():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


# --------------------------------------------------------------------------
# torchzip writer and reader


def sample_state_dict():
    sd = collections.OrderedDict()
    sd["f32"] = Tensor("float32", (2, 3), [0.5, -1, 2, 3e-38, 1e38, -0.0])
    sd["i64"] = Tensor("int64", (3,), [0, -5, 2 ** 62])
    sd["mask"] = Tensor("bool", (4,), [1, 0, 0, 1])
    sd["empty"] = Tensor("float32", (0,), [])
    sd["scalar"] = Tensor("float64", (), [2.5])
    sd["big"] = Tensor("float32", (70000,), [float(i % 97) for i in range(70000)])
    return sd


def test_torchzip_round_trip(tmp_path):
    sd = sample_state_dict()
    path = tmp_path / "s.pt"
    torchzip.save(sd, path)
    back = torchzip.load_state_dict(path)
    assert list(back) == list(sd)
    assert back == sd
    # records stored, data 64-byte aligned as torch writes them
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0
    assert torchzip.encode(sd) == raw  # deterministic


def test_strided_views_are_materialised():
    import array
    st = torchzip._Storage("float32", array.array("f", range(24)))
    full = [[float(6 * r + c) for c in range(6)] for r in range(4)]
    t = torchzip._rebuild_tensor_v2(st, 0, (6, 4), (1, 6))  # transposed
    assert t.tolist() == [list(col) for col in zip(*full)]
    t = torchzip._rebuild_tensor_v2(st, 8, (2, 3), (6, 1))  # window at row 1, col 2
    assert t.tolist() == [row[2:5] for row in full[1:3]]
    t = torchzip._rebuild_tensor_v2(st, 3, (2, 3), (0, 1))  # broadcast rows
    assert t.tolist() == [[3.0, 4.0, 5.0]] * 2
    t = torchzip._rebuild_tensor_v2(st, 5, (), ())          # scalar
    assert t.tolist() == 5.0 and t.shape == ()
    with pytest.raises(TorchFileError, match="reads past its storage"):
        torchzip._rebuild_tensor_v2(st, 20, (2, 3), (3, 1))
    with pytest.raises(TorchFileError, match="broadcast view"):
        torchzip._rebuild_tensor_v2(st, 0, (1 << 20, 1 << 20), (0, 0))


def test_big_endian_archives_are_read():
    sd = collections.OrderedDict([("f", Tensor("float32", (3,), [1.5, -2.0, 3.25])),
                                  ("i", Tensor("int64", (2,), [1, -(2 ** 40)]))])
    with zipfile.ZipFile(io.BytesIO(torchzip.encode(sd))) as zf:
        recs = {n: zf.read(n) for n in zf.namelist()}
    recs["archive/byteorder"] = b"big"
    recs["archive/data/0"] = struct.pack(">3f", 1.5, -2.0, 3.25)
    recs["archive/data/1"] = struct.pack(">2q", 1, -(2 ** 40))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in recs.items():
            zf.writestr(n, d)
    assert torchzip.load_state_dict(io.BytesIO(buf.getvalue())) == sd


def test_torch_loads_what_torchzip_writes(tmp_path):
    torch = pytest.importorskip("torch")
    sd = sample_state_dict()
    path = tmp_path / "s.pt"
    torchzip.save(sd, path)
    for weights_only in (False, True):
        got = torch.load(path, weights_only=weights_only)
        assert isinstance(got, collections.OrderedDict)
        assert list(got) == list(sd)
        for name, t in sd.items():
            assert str(got[name].dtype) == "torch." + t.dtype
            assert tuple(got[name].shape) == t.shape
            assert got[name].flatten().tolist() == [bool(v) if t.dtype == "bool" else v
                                                   for v in t.values.tolist()]


def test_torchzip_reads_what_torch_writes(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = collections.OrderedDict([
        ("transposed", base.t()),                  # strides (1, 6)
        ("window", base[1:3, 2:5]),                # storage offset, shared storage
        ("expanded", torch.arange(3.0).expand(2, 3)),  # stride 0
        ("half", torch.tensor([1.5, -2.0], dtype=torch.float16)),
        ("bf16", torch.tensor([1.5, -2.25], dtype=torch.bfloat16)),
        ("int32", torch.tensor([1, -7], dtype=torch.int32)),
        ("bool", torch.tensor([True, False, True])),
        ("param", torch.nn.Parameter(torch.ones(2))),
        ("scalar", torch.tensor(4.0)),
    ])
    path = tmp_path / "t.pt"
    torch.save(sd, path)
    got = torchzip.load_state_dict(path)
    for name, t in sd.items():
        assert got[name].shape == tuple(t.shape), name
        assert got[name].tolist() == t.tolist(), name
    assert got["param"].requires_grad
    assert got["bf16"].dtype == "bfloat16"


# --------------------------------------------------------------------------
# The official pretrained models


@pytest.mark.parametrize("name", OFFICIAL_MODELS)
def test_official_model_converts_and_runs(tmp_path, official_dir, libelm, name):
    pt = official_pt(official_dir, name)
    out = tmp_path / (name + ".elm")
    model = convert.official_to_elm(pt, None, out)
    cfg = json.loads((official_dir / name / "model_config.json").read_text())
    assert model.formulation == "v1"
    assert model.config["num_memory"] == cfg["num_memory"]
    assert model.config["mlp_activation"] == (1 if cfg.get("mlp_activation") == "silu" else 0)
    assert model.config["input_to_synapse_routing"] == 2
    assert model.metadata["source"] == "neuronio_best_model_state.pt"
    assert json.loads(model.metadata["official_config"]) == cfg
    results = json.loads((official_dir / name / "eval_results.json").read_text())
    assert json.loads(model.metadata["published_metrics"]) == results
    # the published parameter count is the trainable one
    trainable = sum(len(v) for n, (_, v) in model.tensors.items()
                    if n not in ("tau_s", "tau_m_proto"))
    assert model.metadata["published_param_count"] == str(trainable)
    assert elmfile.read(out) == model
    with libelm.load(out) as cm:
        assert cm.size(8) == trainable  # ELM_SIZE_TRAINABLE
        x = random_spikes(1278, 40, B=2, seed=len(name))
        y = cm.forward(x)
        assert y.shape == (2, 40, 2) and np.all(np.isfinite(y))


def test_best_model_reproduces_the_fixture(tmp_path, official_dir, fixtures_dir, libelm):
    case = fixtures_dir / "pretrained_best_elm_neuron"
    out = tmp_path / "best.elm"
    model = convert.official_to_elm(official_pt(official_dir, "best_elm_neuron"), None, out)
    # the fixture's parameters are the checkpoint's, exactly
    sd = torchzip.load_state_dict(official_pt(official_dir, "best_elm_neuron"))
    for name, (shape, values) in model.tensors.items():
        ref = np.load(case / ("param.%s.npy" % convert._official_name(name)))
        got = np.frombuffer(values, dtype=np.float32).reshape(shape)
        np.testing.assert_array_equal(got, ref, err_msg=name)
        assert sd[convert._official_name(name)].values == values
    np.testing.assert_array_equal(model.routing[0],
                                  np.load(case / "param.input_to_synapse_indices.npy"))
    np.testing.assert_array_equal(np.array(model.routing[1], dtype=bool),
                                  np.load(case / "param.valid_indices_mask.npy"))
    x, y_ref = np.load(case / "x.npy"), np.load(case / "y.npy")
    with libelm.load(out) as cm:
        for name, (shape, values) in model.tensors.items():
            np.testing.assert_array_equal(cm.param(name, len(values)),
                                          np.frombuffer(values, dtype=np.float32))
        y = cm.forward(x)
        if libelm.has_save:  # libelm writes the converted model back identically
            cm.save(tmp_path / "resaved.elm")
            assert (tmp_path / "resaved.elm").read_bytes() == out.read_bytes()
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", FIXTURES[:3])
def test_fixture_state_dicts_convert_and_reproduce(tmp_path, fixtures_dir, libelm, case):
    """v1 and v2, routing none and neuronio, 1 and 2 hidden layers."""
    case_dir = fixtures_dir / case
    sd, meta = fixture_state_dict(case_dir)
    pt = write_case(tmp_path, sd, meta["config"])
    out = tmp_path / "model.elm"
    model = convert.official_to_elm(pt, None, out)
    assert model.formulation == meta["formulation"]
    assert model.config["mlp_num_layers"] == meta["config"].get("mlp_num_layers", 1)
    x, y_ref = np.load(case_dir / "x.npy"), np.load(case_dir / "y.npy")
    with libelm.load(out) as cm:
        y = cm.forward(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------
# Export and round trips


@pytest.fixture(scope="module")
def best_elm(tmp_path_factory, official_dir):
    out = tmp_path_factory.mktemp("best") / "best.elm"
    convert.official_to_elm(official_pt(official_dir, "best_elm_neuron"), None, out)
    return out


def _same_contents(a, b):
    assert a.config == b.config
    assert a.routing == b.routing
    assert a.tensors == b.tensors


def test_export_pt_round_trip(tmp_path, best_elm, official_dir):
    pt = tmp_path / "export.pt"
    cfg_path = convert.elm_to_pt(best_elm, pt)
    assert cfg_path == str(tmp_path / "export.model_config.json")
    model = elmfile.read(best_elm)
    # the export is the official state dict, names, dtypes and order included
    original = torchzip.load_state_dict(official_pt(official_dir, "best_elm_neuron"))
    exported = torchzip.load_state_dict(pt)
    assert list(exported) == list(original)
    for name in original:
        assert exported[name] == original[name], name
    # and it imports back to the same model
    back = convert.official_to_elm(pt, None, tmp_path / "back.elm")
    _same_contents(back, model)
    assert back.metadata["source"] == "export.pt"
    # exporting again gives the same bytes
    pt2 = tmp_path / "again.pt"
    convert.elm_to_pt(tmp_path / "back.elm", pt2)
    assert pt2.read_bytes() == pt.read_bytes()
    assert (tmp_path / "again.model_config.json").read_text() == \
        (tmp_path / "export.model_config.json").read_text()


def test_export_pt_loads_in_torch(tmp_path, best_elm, official_dir):
    torch = pytest.importorskip("torch")
    pt = tmp_path / "export.pt"
    convert.elm_to_pt(best_elm, pt)
    original = torch.load(official_pt(official_dir, "best_elm_neuron"), map_location="cpu")
    for weights_only in (False, True):
        got = torch.load(pt, weights_only=weights_only)
        assert list(got) == list(original)
        for name, t in original.items():
            assert got[name].dtype == t.dtype, name
            assert torch.equal(got[name], t), name


@pytest.mark.parametrize("case", ["tiny_v1_relu", "tiny_v2_silu_branch"])
def test_export_round_trip_small(tmp_path, fixtures_dir, case):
    sd, meta = fixture_state_dict(fixtures_dir / case)
    pt = write_case(tmp_path, sd, meta["config"])
    first = convert.official_to_elm(pt, None, tmp_path / "a.elm")
    convert.elm_to_pt(tmp_path / "a.elm", tmp_path / "b.pt")
    exported = torchzip.load_state_dict(tmp_path / "b.pt")
    assert list(exported) == list(sd)
    for name, t in sd.items():
        assert exported[name] == t, name
    second = convert.official_to_elm(tmp_path / "b.pt", None, tmp_path / "b.elm")
    _same_contents(first, second)
    # with the same metadata, the files are identical byte for byte
    second.metadata = first.metadata
    assert elmfile.encode(second) == (tmp_path / "a.elm").read_bytes()


def test_export_npz(tmp_path, best_elm):
    out = tmp_path / "best.npz"
    convert.elm_to_npz(best_elm, out)
    model = elmfile.read(best_elm)
    with np.load(out) as npz:
        names = set(npz.files)
        for name, (shape, values) in model.tensors.items():
            a = npz[name]
            assert a.dtype == np.float32 and a.shape == shape
            np.testing.assert_array_equal(a.ravel(), np.frombuffer(values, dtype=np.float32))
        np.testing.assert_array_equal(npz["routing.idx"], model.routing[0])
        assert npz["routing.idx"].dtype == np.int64
        np.testing.assert_array_equal(npz["routing.mask"], model.routing[1])
        assert json.loads(bytes(npz["config.json"])) == dict(model.config)
        assert json.loads(bytes(npz["metadata.json"])) == dict(model.metadata)
    assert names == set(model.tensors) | {"routing.idx", "routing.mask", "config.json",
                                           "metadata.json"}


def test_npy_header_layout():
    import array
    data = convert.npy_bytes(array.array("f", [1.0, 2.0]), (2,))
    assert data[:8] == b"\x93NUMPY\x01\x00"
    hlen = struct.unpack_from("<H", data, 8)[0]
    assert (10 + hlen) % 64 == 0
    assert np.load(io.BytesIO(data)).tolist() == [1.0, 2.0]


# --------------------------------------------------------------------------
# Refused state dicts and configs


@pytest.fixture()
def tiny(fixtures_dir):
    return fixture_state_dict(fixtures_dir / "tiny_v2_silu_branch")


def _convert_error(tmp_path, sd, cfg):
    pt = write_case(tmp_path, sd, cfg)
    out = tmp_path / "out.elm"
    with pytest.raises(ConvertError) as info:
        convert.official_to_elm(pt, None, out)
    assert not out.exists()
    return str(info.value)


def test_missing_tensor(tmp_path, tiny):
    sd, meta = tiny
    for name in ("w_y.bias", "_proto_tau_m", "mlp.network.2.weight", "mlp.network.4.bias"):
        broken = collections.OrderedDict((k, v) for k, v in sd.items() if k != name)
        assert "missing tensor '%s'" % name in _convert_error(tmp_path, broken, meta["config"])
    broken = collections.OrderedDict((k, v) for k, v in sd.items() if k != "tau_b")
    assert "'tau_b'" in _convert_error(tmp_path, broken, meta["config"])


def test_misshaped_tensor(tmp_path, tiny):
    sd, meta = tiny
    for name, shape in (("mlp.network.2.weight", (7, 6)), ("w_y.weight", (5, 2)),
                        ("_proto_w_s", (5,)), ("tau_b", (6,))):
        broken = collections.OrderedDict(sd)
        n = 1
        for s in shape:
            n *= s
        broken[name] = Tensor("float32", shape, [0.5] * n)
        msg = _convert_error(tmp_path, broken, meta["config"])
        assert "'%s'" % name in msg and "shape" in msg, msg


def test_unknown_tensor(tmp_path, tiny):
    sd, meta = tiny
    for name in ("extra.weight", "mlp.network.6.weight", "mlp.network.1.weight", "tau_s"):
        broken = collections.OrderedDict(sd)
        broken[name] = Tensor("float32", (2,), [0, 0])
        msg = _convert_error(tmp_path, broken, meta["config"])
        assert "'%s'" % name in msg, msg


def test_bad_values_and_dtypes(tmp_path, tiny):
    sd, meta = tiny
    broken = collections.OrderedDict(sd)
    vals = list(sd["mlp.network.0.bias"].values)
    vals[3] = float("nan")
    broken["mlp.network.0.bias"] = Tensor("float32", (7,), vals)
    assert "mlp.network.0.bias" in _convert_error(tmp_path, broken, meta["config"])
    broken = collections.OrderedDict(sd)
    broken["w_y.bias"] = Tensor("int64", (2,), [1, 2])
    assert "'w_y.bias' has dtype int64" in _convert_error(tmp_path, broken, meta["config"])


def test_routing_tensors(tmp_path, fixtures_dir):
    sd, meta = fixture_state_dict(fixtures_dir / "branch_neuronio_routing")
    broken = collections.OrderedDict(sd)
    idx = list(sd["input_to_synapse_indices"].values)
    idx[4] = 10  # num_input is 10
    broken["input_to_synapse_indices"] = Tensor("int64", (15,), idx)
    assert "'input_to_synapse_indices'[4] = 10" in \
        _convert_error(tmp_path, broken, meta["config"])
    broken = collections.OrderedDict((k, v) for k, v in sd.items()
                                     if k != "valid_indices_mask")
    assert "missing tensor 'valid_indices_mask'" in \
        _convert_error(tmp_path, broken, meta["config"])
    # random routing keeps an int64 mask of ones
    cfg = dict(meta["config"], input_to_synapse_routing="random_routing")
    ok = collections.OrderedDict(sd)
    ok["valid_indices_mask"] = Tensor("int64", (15,), [1] * 15)
    pt = write_case(tmp_path, ok, cfg, "random")
    model = convert.official_to_elm(pt, None, None)
    assert model.config["input_to_synapse_routing"] == 1 and model.routing[1] == [1] * 15
    # no routing: the tensors must be empty
    tiny_sd, tiny_meta = fixture_state_dict(fixtures_dir / "tiny_v1_relu")
    tiny_sd["valid_indices_mask"] = Tensor("bool", (6,), [1] * 6)
    assert "no input_to_synapse_routing" in \
        _convert_error(tmp_path, tiny_sd, tiny_meta["config"])


def test_config_must_agree(tmp_path, tiny):
    sd, meta = tiny
    cfg = meta["config"]
    assert "mlp_num_layers = 1" in _convert_error(tmp_path, sd, dict(cfg, mlp_num_layers=1))
    assert "mlp_hidden_size" in _convert_error(tmp_path, sd, dict(cfg, mlp_hidden_size=8))
    no_h = {k: v for k, v in cfg.items() if k != "mlp_hidden_size"}
    assert "2 * num_memory" in _convert_error(tmp_path, sd, no_h)
    assert "unknown key 'bogus'" in _convert_error(tmp_path, sd, dict(cfg, bogus=1))
    msg = _convert_error(tmp_path, sd, dict(cfg, tau_s_value=2.0))
    assert "tau_s_value" in msg and "v2" in msg
    assert "num_input is required" in _convert_error(
        tmp_path, sd, {k: v for k, v in cfg.items() if k != "num_input"})
    assert "mlp_activation" in _convert_error(tmp_path, sd, dict(cfg, mlp_activation="gelu"))
    assert "num_memory" in _convert_error(tmp_path, sd, dict(cfg, num_memory=4))


def test_official_defaults_fill_missing_keys(tmp_path, official_dir):
    # num_memory_1's model_config.json has no mlp_activation: relu by default
    cfg = json.loads((official_dir / "num_memory_1" / "model_config.json").read_text())
    assert "mlp_activation" not in cfg
    model = convert.official_to_elm(official_pt(official_dir, "num_memory_1"), None, None)
    assert model.config["mlp_activation"] == 0
    assert model.config["lambda_value"] == 5.0 and model.config["delta_t"] == 1.0
    assert model.config["mlp_hidden_size"] == 2


# --------------------------------------------------------------------------
# Command line


def test_command_line(tmp_path, official_dir):
    src = tmp_path / "official"
    src.mkdir()
    shutil.copy(official_pt(official_dir, "num_memory_2"), src / "m.pt")
    shutil.copy(official_dir / "num_memory_2" / "model_config.json", src / "cfg.json")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(convert.__file__))] +
        [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "elm.convert"] + list(args), env=env,
                              capture_output=True, text=True)

    r = run("official", str(src / "m.pt"), "-o", str(tmp_path / "m.elm"))
    assert r.returncode == 1 and "--config" in r.stderr  # no model_config.json beside it
    r = run("official", str(src / "m.pt"), "--config", str(src / "cfg.json"),
            "-o", str(tmp_path / "m.elm"))
    assert r.returncode == 0, r.stderr
    r = run("export", str(tmp_path / "m.elm"), "-o", str(tmp_path / "m.npz"))
    assert r.returncode == 0, r.stderr
    r = run("export", str(tmp_path / "m.elm"), "-o", str(tmp_path / "x.pt"),
            "--config-out", str(tmp_path / "x.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "x.json").read_text())["num_memory"] == 2
    r = run("export", str(tmp_path / "m.elm"), "-o", str(tmp_path / "m.txt"))
    assert r.returncode == 2 and ".pt or .npz" in r.stderr
    r = run("info", str(tmp_path / "m.elm"))
    assert r.returncode == 0 and "num_memory" in r.stdout
    (tmp_path / "bad.elm").write_bytes(b"nonsense" * 10)
    r = run("info", str(tmp_path / "bad.elm"))
    assert r.returncode == 1 and "not a .elm file" in r.stderr
