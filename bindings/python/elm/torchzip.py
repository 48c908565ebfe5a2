"""Read and write PyTorch checkpoints (``torch.save`` zip archives) without torch.

A ``torch.save`` file is a zip archive whose entries share one top-level
folder, ``<prefix>/``:

``<prefix>/data.pkl``
    a pickle (protocol 2) of the saved object; every tensor in it is a call
    ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
    whose storage is a *persistent id*
    ``('storage', torch.FloatStorage, key, location, numel)``;
``<prefix>/data/<key>``
    the raw bytes of that storage, ``numel`` elements;
``<prefix>/version``
    the serialisation version (``3``);
``<prefix>/byteorder``
    ``little`` or ``big`` (torch >= 2.1; absent means little-endian).

Unpickling runs code named by the file, so :func:`load` uses a restricted
unpickler that resolves only the handful of globals a dict of tensors needs
and refuses everything else *before* anything is called: a checkpoint from
an untrusted source can make :func:`load` fail, never run a command.

:func:`save` writes the same format (the pickle opcodes, global names and
zip layout that torch writes), so ``torch.load`` reads it with
``weights_only`` True or False, and so does :func:`load`.

Only the Python standard library is used.
"""

import array
import collections
import io
import os
import pickle
import struct
import sys
import zipfile
import zlib

__all__ = ["Tensor", "TorchFileError", "DTYPES", "load", "load_state_dict", "save",
           "encode"]


class TorchFileError(ValueError):
    """A checkpoint that is not a readable torch.save archive of tensors."""


class _DType:
    __slots__ = ("name", "storage", "itemsize", "code", "array_code")

    def __init__(self, name, storage, itemsize, code, array_code):
        self.name = name            # torch's name without "torch."
        self.storage = storage      # legacy storage class name in pickles
        self.itemsize = itemsize    # bytes per element on disk
        self.code = code            # struct format letter on disk
        self.array_code = array_code  # array typecode of Tensor.values


def _array_code(kind, size):
    # array's integer typecodes are C types whose sizes vary by platform;
    # pick the one of the wanted size.
    for code in {"i": "bhilq", "u": "BHILQ"}[kind]:
        if array.array(code).itemsize == size:
            return code
    raise RuntimeError("no array typecode for %d-byte integers" % size)


#: The element types of tensors this module reads, by torch name. Half and
#: bfloat16 values are widened to float32 in Tensor.values (exactly), bools
#: are 0/1 bytes.
DTYPES = collections.OrderedDict((d.name, d) for d in [
    _DType("float32", "FloatStorage", 4, "f", "f"),
    _DType("float64", "DoubleStorage", 8, "d", "d"),
    _DType("float16", "HalfStorage", 2, "e", "f"),
    _DType("bfloat16", "BFloat16Storage", 2, None, "f"),
    _DType("int64", "LongStorage", 8, "q", _array_code("i", 8)),
    _DType("int32", "IntStorage", 4, "i", _array_code("i", 4)),
    _DType("int16", "ShortStorage", 2, "h", _array_code("i", 2)),
    _DType("int8", "CharStorage", 1, "b", "b"),
    _DType("uint8", "ByteStorage", 1, "B", "B"),
    _DType("bool", "BoolStorage", 1, "?", "B"),
])
_BY_STORAGE = {d.storage: d for d in DTYPES.values()}


class Tensor:
    """A dense tensor: dtype name, shape and row-major values.

    ``values`` is an ``array.array`` of ``numel`` elements in row-major
    (C) order, whatever the strides in the file were. ``requires_grad``
    is kept for information only.
    """

    __slots__ = ("dtype", "shape", "values", "requires_grad")

    def __init__(self, dtype, shape, values, requires_grad=False):
        if dtype not in DTYPES:
            raise TorchFileError("unsupported dtype %r" % (dtype,))
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise TorchFileError("negative dimension in shape %r" % (shape,))
        code = DTYPES[dtype].array_code
        if not (isinstance(values, array.array) and values.typecode == code):
            values = array.array(code, values)
        if len(values) != _prod(shape):
            raise TorchFileError("shape %r needs %d values, got %d"
                                 % (shape, _prod(shape), len(values)))
        self.dtype = dtype
        self.shape = shape
        self.values = values
        self.requires_grad = bool(requires_grad)

    @property
    def numel(self):
        return len(self.values)

    def tolist(self):
        """The values as nested lists (a scalar for a 0-d tensor)."""
        vals = self.values.tolist()
        if self.dtype == "bool":
            vals = [bool(v) for v in vals]
        if not self.shape:
            return vals[0]
        return _nest(vals, self.shape)

    def __eq__(self, other):
        return (isinstance(other, Tensor) and self.dtype == other.dtype
                and self.shape == other.shape and self.values == other.values)

    def __repr__(self):
        return "Tensor(dtype=%s, shape=%r)" % (self.dtype, self.shape)


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _nest(flat, shape):
    if len(shape) == 1:
        return list(flat)
    step = _prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


# ---------------------------------------------------------------------------
# Reading


class _StorageType:
    """What the unpickler returns for a global such as torch.FloatStorage."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype


class _Storage:
    __slots__ = ("dtype", "values")

    def __init__(self, dtype, values):
        self.dtype = dtype
        self.values = values


def _decode(dtype, raw, byteorder):
    """Bytes of a storage -> array of its elements (the array_code type)."""
    d = DTYPES[dtype]
    n = len(raw) // d.itemsize
    if d.code == "e":
        fmt = ("<" if byteorder == "little" else ">") + "%de" % n
        return array.array("f", struct.unpack(fmt, raw))
    if dtype == "bfloat16":
        # bfloat16 is the upper half of a float32: widen bit patterns.
        halves = array.array(_array_code("u", 2), raw)
        if byteorder != sys.byteorder:
            halves.byteswap()
        words = array.array(_array_code("u", 4), (h << 16 for h in halves))
        return array.array("f", words.tobytes())
    values = array.array(d.array_code, raw)
    if d.itemsize > 1 and byteorder != sys.byteorder:
        values.byteswap()
    if dtype == "bool" and any(v > 1 for v in values):
        raise TorchFileError("a bool storage holds bytes other than 0 and 1")
    return values


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _gather(values, offset, shape, stride):
    """Row-major values of the strided view (offset, shape, stride)."""
    numel = _prod(shape)
    if numel == 0:
        return values[:0]
    # Contiguous in row-major order (dimensions of size 1 have any stride).
    expect, contiguous = 1, True
    for size, st in zip(reversed(shape), reversed(stride)):
        if size != 1 and st != expect:
            contiguous = False
            break
        expect *= size
    if contiguous:
        return values[offset:offset + numel]
    out = values[:0]

    def walk(dim, base):
        if dim == len(shape) - 1:
            last = base + (shape[dim] - 1) * stride[dim]
            if stride[dim] == 0:
                out.extend(values[base:base + 1] * shape[dim])
            else:
                out.extend(values[base:last + 1:stride[dim]])
            return
        for i in range(shape[dim]):
            walk(dim + 1, base + i * stride[dim])

    walk(0, offset)
    return out


_MAX_BROADCAST = 1 << 26


def _rebuild(storage, offset, size, stride, requires_grad=False):
    if not isinstance(storage, _Storage):
        raise TorchFileError("a tensor's storage is not a storage record")
    if not (_is_int(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride)
            and all(_is_int(v) for v in size + stride)):
        raise TorchFileError("malformed tensor layout (offset %r, size %r, stride %r)"
                             % (offset, size, stride))
    if offset < 0 or any(v < 0 for v in size + stride):
        raise TorchFileError("negative tensor offset, size or stride")
    if _prod(size) > 0:
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= len(storage.values):
            raise TorchFileError("tensor of size %r, stride %r at offset %d reads past its "
                                 "storage of %d elements" % (size, stride, offset,
                                                             len(storage.values)))
    # A view with zero strides can claim far more elements than its storage
    # holds; refuse absurd ones instead of exhausting memory.
    if _prod(size) > max(len(storage.values), _MAX_BROADCAST):
        raise TorchFileError("tensor of size %r is a broadcast view of %d elements over a "
                             "storage of %d" % (size, _prod(size), len(storage.values)))
    values = _gather(storage.values, offset, size, stride)
    return Tensor(storage.dtype, size, values, requires_grad is True)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    # backward_hooks is an empty OrderedDict in every torch.save file (torch
    # warns and drops hooks); metadata (torch >= 1.12) carries dispatch flags
    # that mean nothing for the dense real-valued tensors read here.
    if backward_hooks:
        raise TorchFileError("tensors with backward hooks are not supported")
    return _rebuild(storage, offset, size, stride, requires_grad)


def _rebuild_tensor(storage, offset, size, stride):
    return _rebuild(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, Tensor):
        raise TorchFileError("a parameter does not wrap a tensor")
    if backward_hooks:
        raise TorchFileError("parameters with backward hooks are not supported")
    data.requires_grad = requires_grad is True
    return data


def _torch_size(dims=()):
    return tuple(dims)


# The only globals a checkpoint of tensors refers to. Everything else is
# refused in find_class, before the unpickler could call it.
_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _torch_size,
}
for _d in DTYPES.values():
    _GLOBALS[("torch", _d.storage)] = _StorageType(_d.name)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data, storages):
        super().__init__(io.BytesIO(data))
        self._storages = storages

    def find_class(self, module, name):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise TorchFileError(
                "refused to load global '%s.%s': a checkpoint of tensors never needs it, "
                "so the file is not a plain state dict (or it is malicious); "
                "nothing was executed" % (module, name)) from None

    def persistent_load(self, pid):
        return self._storages(pid)


def _open_zip(source):
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise TorchFileError(
            "%s is not a zip archive: not a torch.save checkpoint of torch >= 1.6 "
            "(the legacy format is not supported; re-save it with a recent torch)"
            % _describe(source)) from None
    return zf


def _describe(source):
    return repr(os.fspath(source)) if isinstance(source, (str, bytes, os.PathLike)) \
        else "the data"


def _find_prefix(zf):
    pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pkls:
        raise TorchFileError("no <prefix>/data.pkl in the archive: not a torch.save "
                             "checkpoint")
    if len(pkls) > 1:
        raise TorchFileError("several data.pkl records (%s): not a torch.save checkpoint"
                             % ", ".join(sorted(pkls)))
    return pkls[0][:-len("data.pkl")]


# A state dict's pickle is a few kB per tensor; refuse absurd sizes before
# reading them into memory.
_MAX_PICKLE = 256 << 20


def load(source):
    """Unpickle a torch.save archive (path or binary file) safely.

    Returns the saved object with every tensor as a :class:`Tensor`.
    Raises :class:`TorchFileError` (a ValueError) for anything that is not
    a checkpoint of tensors, naming the refused global for pickles that
    refer to code.
    """
    with _open_zip(source) as zf:
        prefix = _find_prefix(zf)
        names = set(zf.namelist())
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise TorchFileError("unknown byteorder record %r" % byteorder)
        info = zf.getinfo(prefix + "data.pkl")
        if info.file_size > _MAX_PICKLE:
            raise TorchFileError("data.pkl has %d bytes, more than a state dict needs"
                                 % info.file_size)
        data = zf.read(info)
        cache = {}

        def storage(pid):
            if not (isinstance(pid, tuple) and len(pid) == 5):
                raise TorchFileError("unsupported persistent id %r" % (pid,))
            typename, stype, key, _location, numel = pid
            if isinstance(typename, bytes):
                typename = typename.decode("ascii", "replace")
            if typename != "storage" or not isinstance(stype, _StorageType):
                raise TorchFileError("unsupported persistent id %r" % (pid,))
            if isinstance(key, bytes):
                key = key.decode("ascii", "replace")
            if not isinstance(key, str) or not _is_int(numel) or numel < 0:
                raise TorchFileError("malformed storage id %r" % (pid,))
            if key in cache:
                st = cache[key]
                if st.dtype != stype.dtype:
                    raise TorchFileError("storage %s is read as two dtypes" % key)
                return st
            name = prefix + "data/" + key
            if name not in names:
                raise TorchFileError("storage record %s is missing" % name)
            rec = zf.getinfo(name)
            nbytes = numel * DTYPES[stype.dtype].itemsize
            if rec.file_size != nbytes:
                raise TorchFileError("storage record %s has %d bytes, its %d %s elements "
                                     "need %d" % (name, rec.file_size, numel, stype.dtype,
                                                  nbytes))
            st = _Storage(stype.dtype, _decode(stype.dtype, zf.read(rec), byteorder))
            cache[key] = st
            return st

        try:
            return _Unpickler(data, storage).load()
        except TorchFileError:
            raise
        except Exception as e:  # any other failure of the unpickler: bad data
            raise TorchFileError("malformed checkpoint pickle: %s: %s"
                                 % (type(e).__name__, e)) from None


def load_state_dict(source):
    """:func:`load` a checkpoint that must be a flat mapping name -> Tensor.

    Returns an OrderedDict in the file's order.
    """
    obj = load(source)
    if not isinstance(obj, dict):
        raise TorchFileError("the checkpoint holds a %s, not a state dict"
                             % type(obj).__name__)
    out = collections.OrderedDict()
    for k, v in obj.items():
        if not isinstance(k, str):
            raise TorchFileError("state dict key %r is not a string" % (k,))
        if not isinstance(v, Tensor):
            raise TorchFileError("state dict entry '%s' is a %s, not a tensor"
                                 % (k, type(v).__name__))
        out[k] = v
    return out


# ---------------------------------------------------------------------------
# Writing


class _Pickle:
    """Emits the protocol-2 opcodes torch.save emits for a dict of tensors.

    Written by hand because the real pickler would need the torch objects
    themselves to name their globals. Only opcodes that torch's
    weights_only unpickler accepts are used.
    """

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def global_(self, module, name):
        self.out += b"c" + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n"

    def str_(self, s):
        b = s.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE

    def int_(self, v):
        if 0 <= v < 0x100:
            self.out += b"K" + bytes([v])                 # BININT1
        elif 0 <= v < 0x10000:
            self.out += b"M" + struct.pack("<H", v)       # BININT2
        elif -0x80000000 <= v < 0x80000000:
            self.out += b"J" + struct.pack("<i", v)       # BININT
        else:
            b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(b)]) + b      # LONG1

    def tuple_(self, items):
        if not items:
            self.out += b")"                              # EMPTY_TUPLE
            return
        if len(items) > 3:
            self.out += b"("                              # MARK
        for v in items:
            self.int_(v)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(items), b"t")

    def raw(self, opcodes):
        self.out += opcodes


def _contiguous_strides(shape):
    strides, step = [], 1
    for s in reversed(shape):
        strides.append(step)
        step *= max(s, 1)
    return tuple(reversed(strides))


def _encode_values(t):
    d = DTYPES[t.dtype]
    if d.code == "e":
        return struct.pack("<%de" % t.numel, *t.values)
    if t.dtype == "bfloat16":
        raise TorchFileError("writing bfloat16 tensors is not supported")
    if t.dtype == "bool" and any(v > 1 for v in t.values):
        raise TorchFileError("a bool tensor holds values other than 0 and 1")
    if d.itemsize == 1 or sys.byteorder == "little":
        return t.values.tobytes()
    copy = array.array(t.values.typecode, t.values)
    copy.byteswap()
    return copy.tobytes()


def _pickle_state_dict(items):
    p = _Pickle()
    p.global_("collections", "OrderedDict")
    p.raw(b")R")                                      # EMPTY_TUPLE REDUCE
    if items:
        p.raw(b"(")                                   # MARK
    for key, (name, t) in enumerate(items):
        p.str_(name)
        p.global_("torch._utils", "_rebuild_tensor_v2")
        p.raw(b"((")                                  # MARK (args) MARK (pid)
        p.str_("storage")
        p.global_("torch", DTYPES[t.dtype].storage)
        p.str_(str(key))
        p.str_("cpu")
        p.int_(t.numel)
        p.raw(b"tQ")                                  # TUPLE BINPERSID
        p.int_(0)                                     # storage offset
        p.tuple_(t.shape)
        p.tuple_(_contiguous_strides(t.shape))
        p.raw(b"\x89")                                # NEWFALSE: requires_grad
        p.global_("collections", "OrderedDict")       # backward hooks: empty
        p.raw(b")R")
        p.raw(b"tR")                                  # TUPLE REDUCE
    if items:
        p.raw(b"u")                                   # SETITEMS
    p.raw(b".")                                       # STOP
    return bytes(p.out)


# Fixed zip timestamps (1980-01-01 00:00) so that equal inputs give equal
# bytes.
_DOS_TIME, _DOS_DATE = 0, (1 << 5) | 1
# torch aligns every record's data to 64 bytes (its readers may mmap the
# storages); the local header's extra field "FB" carries the padding.
_ALIGN = 64


def _zip(records):
    """A zip archive of stored (uncompressed) records, data 64-byte aligned."""
    out = bytearray()
    central = bytearray()
    for name, data in records:
        bname = name.encode("ascii")
        offset = len(out)
        pad = (-(offset + 30 + len(bname))) % _ALIGN
        if 0 < pad < 4:
            pad += _ALIGN
        extra = b"" if pad == 0 else b"FB" + struct.pack("<H", pad - 4) + b"Z" * (pad - 4)
        crc = zlib.crc32(data)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, _DOS_TIME, _DOS_DATE,
                           crc, len(data), len(data), len(bname), len(extra))
        out += bname + extra
        assert len(out) % _ALIGN == 0
        out += data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, _DOS_TIME,
                               _DOS_DATE, crc, len(data), len(data), len(bname), 0, 0, 0,
                               0, 0, offset)
        central += bname
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(records), len(records),
                       len(central), cd_offset, 0)
    if len(out) >= 0xFFFFFFFF or len(records) >= 0xFFFF:
        raise TorchFileError("checkpoint too large for a zip archive without zip64")
    return bytes(out)


def encode(state_dict, archive_name="archive"):
    """The bytes of a torch.save file of ``state_dict`` (name -> Tensor).

    torch.load returns an OrderedDict of CPU tensors in the given order.
    """
    if not archive_name or "/" in archive_name or not archive_name.isascii():
        raise ValueError("archive_name must be a plain ASCII name")
    items = []
    for name, t in state_dict.items():
        if not isinstance(name, str):
            raise TypeError("state dict keys must be strings, got %r" % (name,))
        if not isinstance(t, Tensor):
            raise TypeError("state dict entry '%s' is not a torchzip.Tensor" % name)
        items.append((name, t))
    prefix = archive_name + "/"
    records = [(prefix + "data.pkl", _pickle_state_dict(items)),
               (prefix + "byteorder", b"little")]
    records += [(prefix + "data/%d" % i, _encode_values(t)) for i, (_, t) in enumerate(items)]
    records.append((prefix + "version", b"3\n"))
    return _zip(records)


def save(state_dict, path, archive_name="archive"):
    """Write ``state_dict`` (name -> Tensor) to ``path`` as torch.save does.

    The file is written atomically (temporary file, fsync, rename).
    """
    from .elmfile import atomic_write  # shared helper; imported here to keep
    atomic_write(path, encode(state_dict, archive_name))  # this module standalone

