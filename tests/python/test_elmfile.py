"""The .elm reader and writer (bindings/python/elm/elmfile.py) against
docs/file-format.md, and against libelm when ELM_LIBRARY is set."""

import array
import math
import os
import random
import struct
import zlib

import pytest

from elm import elmfile
from elm.elmfile import ElmFileError, ElmModel


def make_model(formulation=1, routing=0, seed=0, learn=0, metadata=None, **cfg):
    """A small random model with every kind of tensor."""
    rng = random.Random(seed)
    config = dict(formulation=formulation, num_input=6, num_output=2, num_memory=3,
                  mlp_num_layers=2, mlp_hidden_size=5, mlp_activation=1,
                  learn_memory_tau=learn, memory_tau_min=1.0, memory_tau_max=150.0,
                  num_branch=3, num_synapse_per_branch=2 if routing == 0 else 4,
                  input_to_synapse_routing=routing, delta_t=1.0, lambda_value=3.0)
    config.update(cfg)
    config = elmfile.resolve_config(config)
    tensors = {}
    for name, shape in elmfile.tensor_layout(config):
        n = 1
        for s in shape:
            n *= s
        if name in ("tau_s", "tau_b"):
            vals = [rng.uniform(1.0, 20.0) for _ in range(n)]
        else:
            vals = [rng.uniform(-1.0, 1.0) for _ in range(n)]
        tensors[name] = (shape, vals)
    shape, vals = tensors["tau_m_proto"]
    vals[-1] = math.inf  # the bounded sigmoid's exact limit is allowed there
    rt = None
    if routing:
        n_s = config["num_branch"] * config["num_synapse_per_branch"]
        rt = ([rng.randrange(config["num_input"]) for _ in range(n_s)],
              [rng.randrange(2) for _ in range(n_s)])
    return ElmModel(config, tensors, rt, metadata)


def refresh_crc(data):
    """Recompute the END section's CRC of (modified) file bytes."""
    data = bytearray(data)
    end = len(data) - 24
    struct.pack_into("<I", data, end + 16, zlib.crc32(data[:end]) & 0xFFFFFFFF)
    return bytes(data)


def sections(data):
    """[(offset, tag, flags, length)] of a file's sections (END excluded)."""
    out, pos, end = [], 24, len(data) - 24
    while pos < end:
        tag = data[pos:pos + 4]
        flags, n = struct.unpack_from("<IQ", data, pos + 4)
        out.append((pos, tag, flags, n))
        pos += 16 + n + (-n) % 8
    return out


def section_offset(data, tag):
    return next(off for off, t, _, _ in sections(data) if t == tag)


def expect_error(code, data, match=None):
    with pytest.raises(ElmFileError, match=match) as info:
        elmfile.decode(data)
    assert info.value.code == code, str(info.value)
    return info.value


# --------------------------------------------------------------------------
# Layout


def test_header_and_sections_follow_the_spec():
    m = make_model(routing=2, metadata={"k": "v"})
    data = elmfile.encode(m)
    assert data[:8] == b"\x89ELM\r\n\x1a\n"
    assert struct.unpack_from("<HHIQ", data, 8) == (1, 0, 0, len(data))
    tags = [(t, f) for _, t, f, _ in sections(data)]
    assert tags == [(b"CONF", 1), (b"ROUT", 1), (b"TENS", 1), (b"META", 0)]
    for off, _, _, _ in sections(data):
        assert off % 8 == 0
    end = len(data) - 24
    assert data[end:end + 4] == b"END "
    assert struct.unpack_from("<IQII", data, end + 4) == (
        1, 8, zlib.crc32(data[:end]), 0)
    # CONF: all 17 names, resolved, in enum order
    off = section_offset(data, b"CONF")
    count, zero = struct.unpack_from("<II", data, off + 16)
    assert (count, zero) == (17, 0)
    names = [data[off + 24 + 40 * i: off + 24 + 40 * i + 32].rstrip(b"\0").decode()
             for i in range(count)]
    assert names == list(elmfile.PARAM_NAMES)
    # ROUT: u64 n_s, i32 idx, u8 mask
    off = section_offset(data, b"ROUT")
    n_s = struct.unpack_from("<Q", data, off + 16)[0]
    assert n_s == 12
    assert list(struct.unpack_from("<12i", data, off + 24)) == m.routing[0]
    assert list(data[off + 24 + 48: off + 24 + 60]) == m.routing[1]
    # TENS: first entry is w_s_proto (12,) f32
    off = section_offset(data, b"TENS")
    assert struct.unpack_from("<II", data, off + 16) == (len(m.tensors), 0)
    name = data[off + 24: off + 64].rstrip(b"\0").decode()
    assert name == "w_s_proto"
    assert struct.unpack_from("<II4Q", data, off + 64) == (1, 1, 12, 0, 0, 0)
    vals = struct.unpack_from("<12f", data, off + 104)
    assert list(vals) == list(m.tensors["w_s_proto"][1])


@pytest.mark.parametrize("formulation,routing", [(1, 0), (2, 0), (1, 1), (2, 2)])
def test_round_trip(tmp_path, formulation, routing):
    m = make_model(formulation, routing, seed=formulation * 10 + routing, learn=1,
                   metadata={"source": "test", "ünïcode": "välue\nwith lines"})
    path = tmp_path / "m.elm"
    elmfile.write(path, m)
    back = elmfile.read(path)
    assert back == m
    assert back.tensors["tau_m_proto"][1][-1] == math.inf
    assert elmfile.encode(back) == path.read_bytes()
    assert list(os.listdir(tmp_path)) == ["m.elm"]  # no temporary left behind


def test_derived_values_are_written_resolved():
    m = make_model(num_branch=0, mlp_hidden_size=0, num_synapse_per_branch=1)
    assert m.config["num_branch"] == 6
    assert m.config["mlp_hidden_size"] == 6
    back = elmfile.decode(elmfile.encode(m))
    assert back.config == m.config


def test_model_checks_tensors():
    good = make_model()
    tensors = dict(good.tensors)
    del tensors["mlp.1.bias"]
    with pytest.raises(ElmFileError, match="'mlp.1.bias'"):
        ElmModel(good.config, tensors)
    tensors = dict(good.tensors)
    tensors["readout.weight"] = ((3, 2), [0.0] * 6)
    with pytest.raises(ElmFileError, match=r"'readout.weight' expects shape \(2, 3\)"):
        ElmModel(good.config, tensors)
    tensors = dict(good.tensors)
    tensors["extra"] = ((1,), [0.0])
    with pytest.raises(ElmFileError, match="unknown tensor 'extra'"):
        ElmModel(good.config, tensors)
    tensors = dict(good.tensors)
    tensors["mlp.0.bias"] = ((5,), [0.0, math.nan, 0, 0, 0])
    with pytest.raises(ElmFileError, match=r"'mlp.0.bias'\[1\] is nan"):
        ElmModel(good.config, tensors)
    tensors = dict(good.tensors)
    tensors["tau_s"] = ((6,), [1.0, 1, 0.0, 1, 1, 1])
    with pytest.raises(ElmFileError, match="time constants must be > 0"):
        ElmModel(good.config, tensors)
    with pytest.raises(ElmFileError, match="no routing table"):
        ElmModel(dict(good.config, input_to_synapse_routing=1), good.tensors)
    with pytest.raises(ElmFileError, match="unknown hyper-parameter 'bogus'"):
        ElmModel(dict(good.config, bogus=1), good.tensors)
    with pytest.raises(ElmFileError, match="mlp_activation = 2 is outside"):
        ElmModel(dict(good.config, mlp_activation=2), good.tensors)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.elm"
    elmfile.write(path, make_model(seed=1))
    old = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        elmfile.write(path, make_model(seed=2))
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["m.elm"]


# --------------------------------------------------------------------------
# What the reader refuses


@pytest.fixture(scope="module")
def good():
    return elmfile.encode(make_model(routing=2, metadata={"a": "b"}))


def test_accepts_good(good):
    assert elmfile.decode(good) == make_model(routing=2, metadata={"a": "b"})


@pytest.mark.parametrize("cut", [0, 10, 23, 24, 100, -25, -1])
def test_truncated(good, cut):
    expect_error("truncated", good[:cut] if cut else b"")


def test_bad_magic(good):
    expect_error("format", b"\x89ELN" + good[4:], "not a .elm file")
    expect_error("format", b"x" * 100, "not a .elm file")


def test_text_mode_damage_is_caught(good):
    # CR-LF -> LF, as a text-mode transfer would do
    expect_error("format", good.replace(b"\r\n", b"\n", 1), "not a .elm file")


def test_bad_crc(good):
    damaged = bytearray(good)
    damaged[section_offset(good, b"TENS") + 200] ^= 0x10
    expect_error("checksum", bytes(damaged), "CRC")
    damaged = bytearray(good)
    damaged[-8] ^= 1  # the stored CRC itself
    expect_error("checksum", bytes(damaged))


def test_newer_major_version(good):
    data = bytearray(good)
    struct.pack_into("<HH", data, 8, 2, 0)
    expect_error("version", refresh_crc(data), "format 2.0 needs a newer")


def test_newer_minor_version_reads(good):
    data = bytearray(good)
    struct.pack_into("<HH", data, 8, 1, 7)
    assert elmfile.decode(refresh_crc(data)).config["num_input"] == 6


def test_declared_size(good):
    data = bytearray(good)
    struct.pack_into("<Q", data, 16, len(good) + 8)
    expect_error("truncated", refresh_crc(data))
    expect_error("format", good + b"\0" * 8, "trailing")
    struct.pack_into("<Q", data, 16, (1 << 40) + 8)
    expect_error("limit", refresh_crc(data), "2\\^40")


def _with_sections(extra, **kw):
    m = make_model(**kw)
    m.sections = list(extra)
    return elmfile.encode(m)


def test_unknown_required_section():
    expect_error("version", _with_sections([(b"ZZZZ", 1, b"12345")]),
                 "required section ZZZZ is unknown")


def test_unknown_optional_section_is_skipped():
    data = _with_sections([(b"ZZZZ", 0, b"123456789")])
    m = elmfile.decode(data)
    assert m.skipped == ["ZZZZ"]
    assert m.tensors == make_model().tensors


def test_known_optional_sections_are_kept():
    data = _with_sections([(b"TRNR", 0, b"abc"), (b"OPTM", 0, b"")])
    assert elmfile.decode(data).sections == [(b"TRNR", 0, b"abc"), (b"OPTM", 0, b"")]


def test_duplicate_section():
    data = _with_sections([(b"TRNR", 0, b"a"), (b"TRNR", 0, b"b")])
    expect_error("format", data, "TRNR appears twice")
    good = elmfile.encode(make_model())
    off = section_offset(good, b"CONF")
    n = struct.unpack_from("<Q", good, off + 8)[0]
    conf = good[off:off + 16 + n + (-n) % 8]
    dup = good[:off] + conf + good[off:]
    dup = bytearray(dup)
    struct.pack_into("<Q", dup, 16, len(dup))
    expect_error("format", refresh_crc(dup), "CONF appears twice")


def test_section_longer_than_the_file(good):
    data = bytearray(good)
    off = section_offset(good, b"TENS")
    struct.pack_into("<Q", data, off + 8, len(good))
    expect_error("limit", refresh_crc(data))


def test_missing_required_sections(good):
    for tag in (b"CONF", b"TENS", b"ROUT"):
        data = bytearray(good)
        off = section_offset(good, tag)
        data[off:off + 4] = b"XXXX"
        struct.pack_into("<I", data, off + 4, 0)  # now an unknown optional section
        expect_error("format", refresh_crc(data), "%s" % tag.decode())


def _patch_conf(good, name, value):
    data = bytearray(good)
    off = section_offset(good, b"CONF") + 24
    for i in range(17):
        entry = off + 40 * i
        if data[entry:entry + 32].rstrip(b"\0") == name.encode():
            struct.pack_into("<d", data, entry + 32, value)
            return refresh_crc(data)
    raise AssertionError(name)


def test_conf_checks(good):
    expect_error("config", _patch_conf(good, "mlp_activation", 3), "mlp_activation = 3")
    expect_error("config", _patch_conf(good, "num_memory", 2.5), "must be an integer")
    expect_error("config", _patch_conf(good, "memory_tau_min", 200), "memory_tau_min")
    data = bytearray(good)
    off = section_offset(good, b"CONF") + 24
    data[off:off + 32] = b"not_a_param".ljust(32, b"\0")
    expect_error("version", refresh_crc(data), "unknown hyper-parameter 'not_a_param'")
    # a name that fills all 32 bytes has no NUL
    data[off:off + 32] = b"x" * 32
    expect_error("format", refresh_crc(data), "NUL-terminated")


def test_conf_size_implies_tensor_bytes(good):
    # num_memory 3 -> 4: every tensor touching memory changes size
    expect_error("shape", _patch_conf(good, "num_memory", 4), "hyper-parameters give")
    expect_error("limit", _patch_conf(good, "num_memory", 16000000), "imply 224000076 parameters")


def test_tensor_checks(good):
    off = section_offset(good, b"TENS") + 24  # first entry: w_s_proto
    data = bytearray(good)
    struct.pack_into("<I", data, off + 40, 2)
    expect_error("format", refresh_crc(data), "dtype 2")
    data = bytearray(good)
    data[off:off + 40] = b"w_s_protx".ljust(40, b"\0")
    expect_error("shape", refresh_crc(data), "tensor 'w_s_protx', which this model")
    data = bytearray(good)
    struct.pack_into("<I4Q", data, off + 44, 2, 4, 3, 0, 0)  # (12,) -> (4, 3)
    expect_error("shape", refresh_crc(data), r"'w_s_proto' has shape \(4, 3\)")
    data = bytearray(good)
    struct.pack_into("<f", data, off + 80 + 4 * 5, math.nan)
    expect_error("nonfinite", refresh_crc(data), r"'w_s_proto'\[5\]")
    data = bytearray(good)
    struct.pack_into("<f", data, off + 80 + 4 * 5, math.inf)
    expect_error("nonfinite", refresh_crc(data), r"'w_s_proto'\[5\] is inf")


def test_routing_checks(good):
    off = section_offset(good, b"ROUT") + 16
    data = bytearray(good)
    struct.pack_into("<i", data, off + 8 + 4 * 3, 6)  # num_input is 6
    expect_error("format", refresh_crc(data), r"idx\[3\] = 6")
    data = bytearray(good)
    data[off + 8 + 4 * 12 + 2] = 2
    expect_error("format", refresh_crc(data), r"mask\[2\] = 2")


def test_rout_in_a_model_without_routing():
    data = elmfile.encode(make_model())
    off = section_offset(data, b"TENS")
    payload = struct.pack("<Q6i", 6, *range(6)) + b"\1" * 6
    rout = b"ROUT" + struct.pack("<IQ", 1, len(payload)) + payload + b"\0" * (-len(payload) % 8)
    data = bytearray(data[:off] + rout + data[off:])
    struct.pack_into("<Q", data, 16, len(data))
    expect_error("format", refresh_crc(data), "ROUT section in a model without routing")


def test_meta_checks():
    data = elmfile.encode(make_model(metadata={"key": "value"}))
    off = section_offset(data, b"META") + 16
    bad = bytearray(data)
    struct.pack_into("<I", bad, off + 8, 0)  # key length 0
    expect_error("format", refresh_crc(bad), "key of 0 bytes")
    bad = bytearray(data)
    bad[off + 16] = 0  # a NUL in the key
    expect_error("format", refresh_crc(bad), "NUL")
    with pytest.raises(ElmFileError, match="NUL"):
        make_model(metadata={"k": "a\0b"})
    with pytest.raises(ElmFileError, match="1 to 255 bytes"):
        make_model(metadata={"k" * 256: "v"})


# --------------------------------------------------------------------------
# Against libelm


@pytest.mark.parametrize("formulation,routing", [(1, 0), (2, 1), (1, 2)])
def test_libelm_reads_what_python_writes(tmp_path, libelm, formulation, routing):
    np = pytest.importorskip("numpy")
    m = make_model(formulation, routing, seed=7, learn=1, metadata={"origin": "python"})
    path = tmp_path / "py.elm"
    elmfile.write(path, m)
    with libelm.load(path) as cm:
        for name, (shape, values) in m.tensors.items():
            got = cm.param(name, len(values))
            np.testing.assert_array_equal(got, np.frombuffer(values, dtype=np.float32))
        y = cm.forward(np.zeros((1, 3, 6), dtype=np.float32))
        assert np.all(np.isfinite(y))
        if libelm.has_save:
            out = tmp_path / "c.elm"
            cm.save(out)
            back = elmfile.read(out)
            assert back.config == m.config
            assert back.tensors == m.tensors
            assert back.routing == m.routing
            assert back.metadata == m.metadata
            # both writers produce the same bytes
            assert out.read_bytes() == path.read_bytes()


def test_libelm_refuses_what_python_refuses(tmp_path, libelm, good):
    from conftest import CError
    cases = {
        "magic": b"\x89ELN" + good[4:],
        "crc": good[:200] + bytes([good[200] ^ 1]) + good[201:],
        "truncated": good[:-30],
        "version": refresh_crc(bytearray(good[:8]) + struct.pack("<H", 2) + good[10:]),
        "required": _with_sections([(b"ZZZZ", 1, b"x")]),
    }
    for what, data in cases.items():
        with pytest.raises(ElmFileError):
            elmfile.decode(data)
        path = tmp_path / ("%s.elm" % what)
        path.write_bytes(data)
        with pytest.raises(CError):
            libelm.load(path).free()
    path = tmp_path / "optional.elm"
    path.write_bytes(_with_sections([(b"ZZZZ", 0, b"x")]))
    libelm.load(path).free()


def test_arrays_are_float32():
    m = make_model()
    for shape, values in m.tensors.values():
        assert isinstance(values, array.array) and values.typecode == "f"
