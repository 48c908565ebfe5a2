"""Reader and writer of the ``.elm`` model format, version 1.0.

The format is specified in docs/file-format.md; this module follows it
byte for byte and validates a file the way libelm's loader does, so that a
file it writes loads in libelm and a file it accepts is one libelm accepts.

A model is an :class:`ElmModel`:

``config``
    the 17 hyper-parameters by libelm name (``elm_param_name()``), with
    derived values resolved, in the enum order of ``elm_param``; integer
    and enumerated keys are ints (formulation 1 = v1, 2 = v2;
    mlp_activation 0 = relu, 1 = silu; routing 0 = none, 1 = random,
    2 = neuronio), the others floats;
``routing``
    ``None`` for routing "none", else ``(idx, mask)``: two lists of n_s ints
    (synapse j reads input idx[j], scaled by mask[j] in {0, 1});
``tensors``
    name -> ``(shape, values)`` with ``values`` a row-major ``array('f')``,
    in the order of ``elm_model_param_info()``;
``metadata``
    an ordered dict of UTF-8 strings;
``sections``
    other optional sections, ``(tag, flags, payload bytes)``, written after
    META as they are (training checkpoints carry OPTM, TRNR and BEST).

Errors are :class:`ElmFileError` (a ValueError) with ``code`` set to the
libelm status name it corresponds to ("truncated", "format", "checksum",
"version", "limit", "config", "shape", "nonfinite").
"""

import array
import collections
import math
import os
import secrets
import struct
import sys
import zlib

__all__ = ["ElmModel", "ElmFileError", "PARAM_NAMES", "MAGIC", "FORMAT_MAJOR",
           "FORMAT_MINOR", "resolve_config", "tensor_layout", "check_tensor_values", "read",
           "decode", "write", "encode", "atomic_write"]

MAGIC = b"\x89ELM\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
HEADER_BYTES = 24
SECTION_HEADER = 16
END_BYTES = SECTION_HEADER + 8
REQUIRED = 1
NAME_BYTES = 32      # CONF entry names
TNAME_BYTES = 40     # TENS entry names
MAX_TENSORS = 160    # 2 L + 7 with L <= 64
FILE_LIMIT = 1 << 40
META_MAX_KEY = 255
META_MAX_VALUE = 1 << 20
META_MAX_ENTRIES = 1024
DTYPE_F32 = 1
MAX_DIMS = 4

# Sections libelm 1.0 knows. The first four are read here; OPTM, TRNR and
# BEST (training checkpoints) are carried as raw bytes.
_MODEL_TAGS = (b"CONF", b"ROUT", b"TENS", b"META")
_KNOWN_OPTIONAL = (b"OPTM", b"TRNR", b"BEST")


class ElmFileError(ValueError):
    """A .elm file or model that libelm would refuse; ``code`` names why."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


_Param = collections.namedtuple("_Param", "name alias lo hi integer default")

_MAX_DIM = 16777216.0  # 2^24, as lib/config.c

# elm_param in enum order (values 1 .. 17): name, accepted alias, inclusive
# bounds, integer-valued, default. Mirrors lib/config.c.
_PARAMS = (
    _Param("formulation", None, 1, 2, True, 1),
    _Param("num_input", None, 1, _MAX_DIM, True, 0),
    _Param("num_output", None, 1, _MAX_DIM, True, 0),
    _Param("num_memory", None, 1, _MAX_DIM, True, 100),
    _Param("lambda_value", "lambda", 0, 1e6, False, 5.0),
    _Param("mlp_num_layers", None, 0, 64, True, 1),
    _Param("mlp_hidden_size", None, 0, _MAX_DIM, True, 0),
    _Param("mlp_activation", None, 0, 1, True, 0),
    _Param("tau_s_value", "tau_b_value", 1e-6, 1e9, False, 5.0),
    _Param("memory_tau_min", None, 0, 1e9, False, 1.0),
    _Param("memory_tau_max", None, 0, 1e9, False, 1000.0),
    _Param("learn_memory_tau", None, 0, 1, True, 0),
    _Param("w_s_value", None, -1e6, 1e6, False, 0.5),
    _Param("num_branch", None, 0, _MAX_DIM, True, 0),
    _Param("num_synapse_per_branch", None, 1, _MAX_DIM, True, 1),
    _Param("input_to_synapse_routing", None, 0, 2, True, 0),
    _Param("delta_t", "dt", 1e-9, 1e9, False, 1.0),
)
PARAM_NAMES = tuple(p.name for p in _PARAMS)
_BY_NAME = {}
for _p in _PARAMS:
    _BY_NAME[_p.name] = _p
    if _p.alias:
        _BY_NAME[_p.alias] = _p

ROUTING_NONE, ROUTING_RANDOM, ROUTING_NEURONIO = 0, 1, 2


def _fail(code, message):
    raise ElmFileError(code, message)


def _check_value(p, value, where):
    """One hyper-parameter as elm_config_set checks it; returns it typed."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, (int, float)):
        _fail("config", "%s: %s must be a number, got %r" % (where, p.name, value))
    if not math.isfinite(value):
        _fail("config", "%s: %s must be finite" % (where, p.name))
    if p.integer and value != math.floor(value):
        _fail("config", "%s: %s must be an integer, got %r" % (where, p.name, value))
    if not p.lo <= value <= p.hi:
        _fail("config", "%s: %s = %g is outside [%g, %g]" % (where, p.name, value, p.lo, p.hi))
    return int(value) if p.integer else float(value)


def resolve_config(config, where="config"):
    """Complete, check and resolve a hyper-parameter mapping.

    Accepts libelm names (and the aliases libelm accepts); missing keys take
    their defaults; num_branch and mlp_hidden_size of 0 are resolved. Checks
    bounds and consistency as elm_config_validate. Returns an OrderedDict of
    all 17 keys in enum order.
    """
    values = {}
    for key, value in config.items():
        p = _BY_NAME.get(key)
        if p is None:
            _fail("config", "%s: unknown hyper-parameter '%s'" % (where, key))
        if p.name in values:
            _fail("config", "%s: hyper-parameter '%s' is given twice" % (where, p.name))
        values[p.name] = value
    out = collections.OrderedDict()
    for p in _PARAMS:
        if p.name in values:
            out[p.name] = _check_value(p, values[p.name], where)
        elif p.name in ("num_input", "num_output"):
            _fail("config", "%s: %s is not set" % (where, p.name))
        else:
            out[p.name] = p.default
    n_in, n_m = out["num_input"], out["num_memory"]
    if out["num_branch"] == 0:
        out["num_branch"] = n_in
    if out["mlp_hidden_size"] == 0:
        out["mlp_hidden_size"] = 2 * n_m
    n_b, k, H = out["num_branch"], out["num_synapse_per_branch"], out["mlp_hidden_size"]
    n_s = n_b * k
    if n_s > _MAX_DIM:
        _fail("config", "%s: num_branch * num_synapse_per_branch = %d exceeds %d"
              % (where, n_s, _MAX_DIM))
    if H > _MAX_DIM:
        _fail("config", "%s: mlp_hidden_size %d exceeds %d" % (where, H, _MAX_DIM))
    if H * max(n_b + n_m, H) > 2147483647 or n_m * out["num_output"] > 2147483647:
        _fail("config", "%s: a weight matrix would exceed 2^31 elements" % where)
    routing = out["input_to_synapse_routing"]
    if routing == ROUTING_NONE and n_s != n_in:
        _fail("config", "%s: without routing, num_branch * num_synapse_per_branch (%d) must "
              "equal num_input (%d)" % (where, n_s, n_in))
    if routing == ROUTING_NEURONIO:
        stride = -(-n_in // n_b)
        if stride > k:
            _fail("config", "%s: neuronio routing needs ceil(num_input / num_branch) = %d <= "
                  "num_synapse_per_branch = %d" % (where, stride, k))
        if n_in % 2:
            _fail("config", "%s: neuronio routing needs an even num_input, got %d"
                  % (where, n_in))
    if not out["memory_tau_min"] < out["memory_tau_max"]:
        _fail("config", "%s: memory_tau_min (%g) must be < memory_tau_max (%g)"
              % (where, out["memory_tau_min"], out["memory_tau_max"]))
    if out["formulation"] == 2 and out["memory_tau_max"] < out["memory_tau_min"] + 3e-6:
        # As the v2 reference (and elm_model_create) does.
        out["memory_tau_max"] = out["memory_tau_min"] + 3e-6
    return out


def tensor_layout(config):
    """[(name, shape)] of a resolved config, in elm_model_param_info order."""
    c = config
    n_s = c["num_branch"] * c["num_synapse_per_branch"]
    n_b, n_m, H, L = c["num_branch"], c["num_memory"], c["mlp_hidden_size"], c["mlp_num_layers"]
    out = [("w_s_proto", (n_s,)),
           ("tau_s", (n_s,)) if c["formulation"] == 1 else ("tau_b", (n_b,)),
           ("tau_m_proto", (n_m,))]
    for i in range(L + 1):
        fan_in = n_b + n_m if i == 0 else H
        fan_out = n_m if i == L else H
        out.append(("mlp.%d.weight" % i, (fan_out, fan_in)))
        out.append(("mlp.%d.bias" % i, (fan_out,)))
    out.append(("readout.weight", (c["num_output"], n_m)))
    out.append(("readout.bias", (c["num_output"],)))
    return out


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_tensor_values(name, values, where, label=None):
    """Values as libelm accepts them for tensor ``name``: finite
    (tau_m_proto may be +-Inf, the bounded sigmoid's exact limits), time
    constants > 0. ``label`` is the name to show (default ``name``)."""
    label = label or name
    isfinite = math.isfinite
    if name == "tau_m_proto":
        bad = next((i for i, v in enumerate(values) if v != v), None)
    else:
        bad = next((i for i, v in enumerate(values) if not isfinite(v)), None)
    if bad is not None:
        _fail("nonfinite", "%s: '%s'[%d] is %r" % (where, label, bad, values[bad]))
    if name in ("tau_s", "tau_b"):
        bad = next((i for i, v in enumerate(values) if not v > 0), None)
        if bad is not None:
            _fail("nonfinite", "%s: '%s'[%d] = %r; time constants must be > 0"
                  % (where, label, bad, values[bad]))


def _as_f32(values):
    if isinstance(values, array.array) and values.typecode == "f":
        return array.array("f", values)
    try:
        return array.array("f", values)
    except (TypeError, OverflowError) as e:
        raise ElmFileError("shape", "values are not float32 numbers: %s" % e) from None


def _check_metadata(metadata, where):
    out = collections.OrderedDict()
    if len(metadata) > META_MAX_ENTRIES:
        _fail("limit", "%s: %d metadata entries, at most %d" % (where, len(metadata),
                                                               META_MAX_ENTRIES))
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            _fail("format", "%s: metadata keys and values must be strings, got %r: %r"
                  % (where, key, type(value).__name__))
        kb = key.encode("utf-8", "surrogateescape")
        vb = value.encode("utf-8", "surrogateescape")
        if not 1 <= len(kb) <= META_MAX_KEY:
            _fail("format", "%s: metadata keys have 1 to %d bytes, got %d"
                  % (where, META_MAX_KEY, len(kb)))
        if b"\0" in kb or b"\0" in vb:
            _fail("format", "%s: metadata '%s' holds a NUL byte" % (where, key))
        if len(vb) > META_MAX_VALUE:
            _fail("limit", "%s: the value of '%s' has %d bytes, at most %d allowed"
                  % (where, key, len(vb), META_MAX_VALUE))
        out[key] = value
    return out


class ElmModel:
    """One ELM neuron as a .elm file holds it (see the module docstring).

    The constructor checks everything the writer and libelm check: the
    config, every tensor's presence, shape and values, the routing table
    and the metadata. Tensor values are converted to float32.
    """

    def __init__(self, config, tensors, routing=None, metadata=None, sections=()):
        self.config = resolve_config(config)
        layout = tensor_layout(self.config)
        expected = dict(layout)
        for name in tensors:
            if name not in expected:
                _fail("shape", "unknown tensor '%s' for this configuration (expected %s)"
                      % (name, ", ".join(n for n, _ in layout)))
        self.tensors = collections.OrderedDict()
        for name, shape in layout:
            if name not in tensors:
                _fail("shape", "tensor '%s' %s is missing" % (name, _shape_str(shape)))
            got_shape, values = tensors[name]
            got_shape = tuple(got_shape)
            if got_shape != shape:
                _fail("shape", "tensor '%s' expects shape %s, got %s"
                      % (name, _shape_str(shape), _shape_str(got_shape)))
            values = _as_f32(values)
            if len(values) != _numel(shape):
                _fail("shape", "tensor '%s' of shape %s needs %d values, got %d"
                      % (name, _shape_str(shape), _numel(shape), len(values)))
            check_tensor_values(name, values, "tensor")
            self.tensors[name] = (shape, values)
        self.routing = self._check_routing(routing)
        self.metadata = _check_metadata(metadata or {}, "metadata")
        self.sections = []
        for tag, flags, payload in sections:
            tag = tag.encode("ascii") if isinstance(tag, str) else bytes(tag)
            if len(tag) != 4 or tag in _MODEL_TAGS or tag == b"END ":
                _fail("format", "extra section tag %r is not allowed" % tag)
            if flags not in (0, REQUIRED):
                _fail("format", "section %s: flags must be 0 or 1" % tag.decode("ascii",
                                                                               "replace"))
            self.sections.append((tag, flags, bytes(payload)))
        #: tags of unknown optional sections the reader skipped
        self.skipped = []

    def _check_routing(self, routing):
        c = self.config
        n_s = c["num_branch"] * c["num_synapse_per_branch"]
        if c["input_to_synapse_routing"] == ROUTING_NONE:
            if routing is not None:
                _fail("config", "a routing table is given but input_to_synapse_routing is "
                      "none")
            return None
        if routing is None:
            _fail("config", "input_to_synapse_routing is not none but no routing table is "
                  "given")
        idx, mask = [int(v) for v in routing[0]], [int(v) for v in routing[1]]
        if len(idx) != n_s or len(mask) != n_s:
            _fail("shape", "routing: idx and mask need %d entries (n_s), got %d and %d"
                  % (n_s, len(idx), len(mask)))
        for j, v in enumerate(idx):
            if not 0 <= v < c["num_input"]:
                _fail("config", "routing: idx[%d] = %d is outside [0, %d)"
                      % (j, v, c["num_input"]))
        for j, v in enumerate(mask):
            if v not in (0, 1):
                _fail("config", "routing: mask[%d] = %d is not 0 or 1" % (j, v))
        return idx, mask

    @property
    def formulation(self):
        return "v1" if self.config["formulation"] == 1 else "v2"

    @property
    def num_synapse(self):
        return self.config["num_branch"] * self.config["num_synapse_per_branch"]

    def __eq__(self, other):
        return (isinstance(other, ElmModel) and self.config == other.config
                and self.tensors == other.tensors and self.routing == other.routing
                and self.metadata == other.metadata and self.sections == other.sections)

    def __repr__(self):
        return "ElmModel(%s, %d tensors, metadata %s)" % (
            self.formulation, len(self.tensors), list(self.metadata))


# ---------------------------------------------------------------------------
# Writing


def _pad8(n):
    return (-n) % 8


class _Writer:
    def __init__(self):
        self.buf = bytearray()

    def section(self, tag, flags, payload):
        assert len(self.buf) % 8 == 0
        self.buf += tag + struct.pack("<IQ", flags, len(payload)) + payload
        self.buf += b"\0" * _pad8(len(payload))


def _name(s, width):
    b = s.encode("ascii")
    if len(b) >= width:
        raise ElmFileError("format", "name '%s' is longer than %d characters" % (s, width - 1))
    return b + b"\0" * (width - len(b))


def _f32_bytes(values):
    if sys.byteorder == "little":
        return values.tobytes()
    copy = array.array("f", values)
    copy.byteswap()
    return copy.tobytes()


def encode(model):
    """The bytes of ``model`` (an :class:`ElmModel`) as a .elm file."""
    w = _Writer()
    w.buf += MAGIC + struct.pack("<HHIQ", FORMAT_MAJOR, FORMAT_MINOR, 0, 0)
    conf = bytearray(struct.pack("<II", len(model.config), 0))
    for key, value in model.config.items():
        conf += _name(key, NAME_BYTES) + struct.pack("<d", float(value))
    w.section(b"CONF", REQUIRED, bytes(conf))
    if model.routing is not None:
        idx, mask = model.routing
        rout = struct.pack("<Q", len(idx)) + struct.pack("<%di" % len(idx), *idx) \
            + bytes(mask)
        w.section(b"ROUT", REQUIRED, rout)
    tens = bytearray(struct.pack("<II", len(model.tensors), 0))
    for name, (shape, values) in model.tensors.items():
        dims = tuple(shape) + (0,) * (MAX_DIMS - len(shape))
        tens += _name(name, TNAME_BYTES) + struct.pack("<II4Q", DTYPE_F32, len(shape), *dims)
        data = _f32_bytes(values)
        tens += data + b"\0" * _pad8(len(data))
    w.section(b"TENS", REQUIRED, bytes(tens))
    if model.metadata:
        meta = bytearray(struct.pack("<II", len(model.metadata), 0))
        for key, value in model.metadata.items():
            kb = key.encode("utf-8", "surrogateescape")
            vb = value.encode("utf-8", "surrogateescape")
            entry = struct.pack("<II", len(kb), len(vb)) + kb + vb
            meta += entry + b"\0" * _pad8(len(entry))
        w.section(b"META", 0, bytes(meta))
    for tag, flags, payload in model.sections:
        w.section(tag, flags, payload)
    size = len(w.buf) + END_BYTES
    struct.pack_into("<Q", w.buf, 16, size)
    # The CRC covers every byte before END's tag, the declared size included.
    crc = zlib.crc32(w.buf) & 0xFFFFFFFF
    w.section(b"END ", REQUIRED, struct.pack("<II", crc, 0))
    assert len(w.buf) == size
    return bytes(w.buf)


def atomic_write(path, data):
    """Write ``data`` to ``path`` so that either the old file or the complete
    new one is there afterwards: a temporary file in the same directory,
    flushed to disk, renamed over ``path``, then the directory synced."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    while True:
        tmp = os.path.join(directory, ".%s.%s.tmp" % (base, secrets.token_hex(4)))
        try:
            # O_EXCL: never follow or reuse someone else's file; mode 0666
            # lets the umask decide, as for any new file.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles: the rename is done
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write(path, model):
    """Write ``model`` (an :class:`ElmModel`) to ``path`` atomically."""
    atomic_write(path, encode(model))


# ---------------------------------------------------------------------------
# Reading


class _Cursor:
    def __init__(self, data, tag):
        self.data, self.pos, self.tag = data, 0, tag

    def take(self, n, what):
        if n > len(self.data) - self.pos:
            _fail("format", "%s: %s runs past the end of the section" % (self.tag, what))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def name(self, width, what):
        raw = self.take(width, what)
        end = raw.find(b"\0")
        if end < 0:
            _fail("format", "%s: %s is not NUL-terminated" % (self.tag, what))
        try:
            return raw[:end].decode("ascii")
        except UnicodeDecodeError:
            _fail("format", "%s: %s is not ASCII" % (self.tag, what))

    def count(self, what):
        count, zero = self.unpack("<II", what + " count")
        if zero != 0:
            _fail("format", "%s: reserved field is %d, not 0" % (self.tag, zero))
        return count

    def done(self):
        if self.pos != len(self.data):
            _fail("format", "%s: %d unexpected bytes at the end of the section"
                  % (self.tag, len(self.data) - self.pos))


def _read_conf(payload):
    cur = _Cursor(payload, "CONF")
    count = cur.count("entry")
    if len(payload) != 8 + count * (NAME_BYTES + 8):
        _fail("format", "CONF: %d bytes do not hold %d entries" % (len(payload), count))
    raw = collections.OrderedDict()
    for i in range(count):
        name = cur.name(NAME_BYTES, "entry %d's name" % i)
        (value,) = cur.unpack("<d", "entry %d's value" % i)
        p = _BY_NAME.get(name)
        if p is None:
            _fail("version", "CONF: unknown hyper-parameter '%s' (written by a newer libelm?)"
                  % name)
        if p.name in raw:
            _fail("format", "CONF: hyper-parameter '%s' appears twice" % p.name)
        raw[p.name] = value
    return resolve_config(raw, "CONF")


def _read_tens(payload, config, tag="TENS"):
    layout = tensor_layout(config)
    expected = dict(layout)
    want = sum(_numel(shape) for _, shape in layout)
    cur = _Cursor(payload, tag)
    count = cur.count("tensor")
    if count > MAX_TENSORS:
        _fail("limit", "%s: declares %d tensors, at most %d exist" % (tag, count, MAX_TENSORS))
    # The parameters the hyper-parameters imply must fit in the section
    # before anything is read (a config claiming terabytes fails here).
    if want > len(payload) // 4:
        _fail("limit", "%s: the hyper-parameters imply %d parameters; the section holds %d "
              "bytes" % (tag, want, len(payload)))
    tensors = {}
    for i in range(count):
        name = cur.name(TNAME_BYTES, "tensor %d's name" % i)
        dtype, ndim = cur.unpack("<II", "tensor %d's header" % i)
        dims = cur.unpack("<4Q", "tensor %d's shape" % i)
        if name not in expected:
            _fail("shape", "%s: holds tensor '%s', which this model does not have" % (tag, name))
        if name in tensors:
            _fail("format", "%s: holds tensor '%s' twice" % (tag, name))
        if dtype != DTYPE_F32:
            _fail("format", "%s: tensor '%s' has dtype %d; 1 (f32) is the only one in 1.0"
                  % (tag, name, dtype))
        if not 1 <= ndim <= MAX_DIMS or any(dims[ndim:]):
            _fail("format", "%s: tensor '%s' has a malformed shape (ndim %d, dims %s)"
                  % (tag, name, ndim, list(dims)))
        shape = tuple(dims[:ndim])
        if shape != expected[name]:
            _fail("shape", "%s: tensor '%s' has shape %s; the hyper-parameters give %s"
                  % (tag, name, _shape_str(shape), _shape_str(expected[name])))
        n = 4 * _numel(shape)
        values = array.array("f")
        values.frombytes(cur.take(n, "tensor '%s' data" % name))
        if sys.byteorder != "little":
            values.byteswap()
        cur.take(_pad8(n), "tensor '%s' padding" % name)
        check_tensor_values(name, values, tag)
        tensors[name] = (shape, values)
    for name, shape in layout:
        if name not in tensors:
            _fail("shape", "%s: lacks tensor '%s'" % (tag, name))
    cur.done()
    return collections.OrderedDict((name, tensors[name]) for name, _ in layout)


def _read_rout(payload, config):
    n_s = config["num_branch"] * config["num_synapse_per_branch"]
    if len(payload) < 8:
        _fail("format", "ROUT: %d bytes, too short" % len(payload))
    (count,) = struct.unpack_from("<Q", payload)
    if count != n_s:
        _fail("shape", "ROUT: holds %d synapses, the hyper-parameters give %d" % (count, n_s))
    if len(payload) < 8 + 5 * n_s:
        _fail("limit", "ROUT: declares %d synapses, its section holds fewer" % n_s)
    if len(payload) > 8 + 5 * n_s:
        _fail("format", "ROUT: %d unexpected bytes after the table"
              % (len(payload) - 8 - 5 * n_s))
    idx = list(struct.unpack_from("<%di" % n_s, payload, 8))
    mask = list(payload[8 + 4 * n_s:])
    n_in = config["num_input"]
    for j, v in enumerate(idx):
        if not 0 <= v < n_in:
            _fail("format", "ROUT: idx[%d] = %d is outside [0, %d)" % (j, v, n_in))
    for j, v in enumerate(mask):
        if v > 1:
            _fail("format", "ROUT: mask[%d] = %d is not 0 or 1" % (j, v))
    return idx, mask


def _read_meta(payload):
    cur = _Cursor(payload, "META")
    count = cur.count("entry")
    if count > META_MAX_ENTRIES:
        _fail("limit", "META: %d entries, at most %d" % (count, META_MAX_ENTRIES))
    meta = collections.OrderedDict()
    for i in range(count):
        klen, vlen = cur.unpack("<II", "entry %d's lengths" % i)
        if not 1 <= klen <= META_MAX_KEY:
            _fail("format", "META: entry %d has a key of %d bytes (1 to %d allowed)"
                  % (i, klen, META_MAX_KEY))
        if vlen > META_MAX_VALUE:
            _fail("limit", "META: entry %d has a value of %d bytes (at most %d)"
                  % (i, vlen, META_MAX_VALUE))
        kb = cur.take(klen, "entry %d's key" % i)
        vb = cur.take(vlen, "entry %d's value" % i)
        cur.take(_pad8(8 + klen + vlen), "entry %d's padding" % i)
        if b"\0" in kb or b"\0" in vb:
            _fail("format", "META: entry %d holds a NUL byte" % i)
        key = kb.decode("utf-8", "surrogateescape")
        if key in meta:
            _fail("format", "META: key '%s' appears twice" % key)
        meta[key] = vb.decode("utf-8", "surrogateescape")
    cur.done()
    return meta


def decode(data):
    """Parse and validate the bytes of a .elm file; returns an ElmModel.

    Checks, in the order of docs/file-format.md: size, magic, version,
    declared size, END and CRC-32, section framing, then CONF, TENS, ROUT.
    """
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        _fail("truncated", "%d bytes: shorter than the 24-byte header" % len(data))
    if data[:8] != MAGIC:
        _fail("format", "not a .elm file (bad magic)")
    major, minor, flags, size = struct.unpack_from("<HHIQ", data, 8)
    if major > FORMAT_MAJOR:
        _fail("version", "format %d.%d needs a newer reader (this one reads %d.x)"
              % (major, minor, FORMAT_MAJOR))
    if major < 1:
        _fail("format", "format version %d.%d does not exist" % (major, minor))
    if size > FILE_LIMIT:
        _fail("limit", "declared file size %d exceeds 2^40 bytes" % size)
    if size > len(data):
        _fail("truncated", "the header declares %d bytes, only %d are there"
              % (size, len(data)))
    if size < len(data):
        _fail("format", "%d trailing bytes after the declared end of the file"
              % (len(data) - size))
    # The header's flags and a section's flag bits other than "required" are
    # 0 in 1.x; like libelm, the reader ignores them.
    end = size - END_BYTES
    if end < HEADER_BYTES or end % 8 or data[end:end + 4] != b"END " \
            or struct.unpack_from("<Q", data, end + 8)[0] != 8:
        _fail("format", "no END section at the end of the file (truncated or damaged)")
    crc, zero = struct.unpack_from("<II", data, end + 16)
    if crc != zlib.crc32(data[:end]) & 0xFFFFFFFF:
        _fail("checksum", "CRC-32 mismatch: the file is damaged")
    sections = []
    pos = HEADER_BYTES
    while pos < end:
        if end - pos < SECTION_HEADER:
            _fail("format", "%d stray bytes before END" % (end - pos))
        tag = data[pos:pos + 4]
        if any(c < 0x20 or c > 0x7E for c in tag):
            _fail("format", "the section at byte %d has a non-ASCII tag" % pos)
        sflags, n = struct.unpack_from("<IQ", data, pos + 4)
        if n > end - pos - SECTION_HEADER:
            _fail("limit", "section %s at byte %d declares %d bytes, only %d remain"
                  % (tag.decode("ascii"), pos, n, end - pos - SECTION_HEADER))
        if n + _pad8(n) > end - pos - SECTION_HEADER:
            _fail("format", "section %s overlaps the END section" % tag.decode("ascii"))
        if tag == b"END ":
            _fail("format", "END section at byte %d before the end of the file" % pos)
        sections.append((tag, sflags, data[pos + SECTION_HEADER:pos + SECTION_HEADER + n]))
        pos += SECTION_HEADER + n + _pad8(n)
    found, extra, skipped = {}, [], []
    for tag, sflags, payload in sections:
        name = tag.decode("ascii", "replace")
        if tag in _MODEL_TAGS or tag in _KNOWN_OPTIONAL:
            if tag in found or any(t == tag for t, _, _ in extra):
                _fail("format", "section %s appears twice" % name)
            if tag in _MODEL_TAGS:
                found[tag] = payload
            else:
                extra.append((tag, sflags, payload))
        elif sflags & REQUIRED:
            _fail("version", "required section %s is unknown (written by a newer libelm)"
                  % name)
        else:
            skipped.append(name)
    for tag in (b"CONF", b"TENS"):
        if tag not in found:
            _fail("format", "required section %s is missing" % tag.decode("ascii"))
    config = _read_conf(found[b"CONF"])
    tensors = _read_tens(found[b"TENS"], config)
    routing = None
    if config["input_to_synapse_routing"] != ROUTING_NONE:
        if b"ROUT" not in found:
            _fail("format", "routing is %d but the ROUT section is missing"
                  % config["input_to_synapse_routing"])
        routing = _read_rout(found[b"ROUT"], config)
    elif b"ROUT" in found:
        _fail("format", "ROUT section in a model without routing")
    metadata = _read_meta(found[b"META"]) if b"META" in found else {}
    model = ElmModel(config, tensors, routing, metadata, extra)
    model.skipped = skipped
    return model


def read(path):
    """Read and validate a .elm file; returns an :class:`ElmModel`."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        # Refuse an absurd declared size before reading the whole file.
        if len(head) == HEADER_BYTES and head[:8] == MAGIC:
            (size,) = struct.unpack_from("<Q", head, 16)
            if size > FILE_LIMIT:
                _fail("limit", "declared file size %d exceeds 2^40 bytes" % size)
        return decode(head + f.read())
