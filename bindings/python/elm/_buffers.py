"""Arrays in and out of libelm, with or without numpy.

libelm reads and writes plain C arrays: row-major float32, int32 (labels),
int64 (lengths, routing indices, event offsets), uint8 (routing mask),
float64 (training-config lists). This module turns Python objects into
(address, element count, shape) for the ``c_void_p`` arguments of
:mod:`elm._capi`, and allocates output arrays.

The dtype and layout rules
--------------------------
Inputs (arrays libelm only reads):

* a numpy array of the exact dtype that is C-contiguous is passed
  zero-copy;
* any other numpy array or array-like (lists, float64 arrays, Fortran
  order, slices) is converted with ``numpy.ascontiguousarray(a, dtype)``,
  a copy, EXCEPT that floating-point data is refused (TypeError) where
  integers are expected (labels, lengths, indices) and complex data is
  refused everywhere: those conversions would silently change values;
* without numpy (or for non-numpy objects): any object with the buffer
  protocol whose format matches the dtype (``array.array('f')`` for
  float32, ``'i'`` int32, ``'q'`` int64, ``'B'`` uint8, ``'d'`` float64; a
  ``memoryview`` of those; ``bytearray``/``bytes`` are taken as raw bytes of
  the dtype) is passed zero-copy when writable and C-contiguous, copied
  when read-only; a list or tuple of numbers is copied into an
  ``array.array``. Buffers other than a shaped memoryview are flat: their
  shape is inferred from the element count when at most one dimension is
  unknown, else give it with ``memoryview(buf).cast('f', (B, T, n))``.

Outputs (arrays libelm writes, ``out=`` arguments) are never converted: a
copy would silently drop the result. They must be writable, C-contiguous,
of the exact dtype and of the exact shape (for flat buffers: the exact
element count), else ValueError/TypeError.

Every shape mismatch raises ValueError naming the argument, the expected
and the received shape, before libelm is called.

Allocation: :func:`empty` / :func:`zeros` return numpy arrays when numpy
is importable (and ``use_numpy`` is not False), else flat ``array.array``.
"""

import array
import ctypes
import math

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None

HAVE_NUMPY = _np is not None

# dtype name -> (array typecode, itemsize, is integer, buffer formats)
_DTYPES = {
    "float32": ("f", 4, False),
    "float64": ("d", 8, False),
    "int32": ("i", 4, True),
    "int64": ("q", 8, True),
    "uint8": ("B", 1, True),
}


def _typecode(dtype):
    code, size, _ = _DTYPES[dtype]
    if array.array(code).itemsize != size:  # 'i' is 4 bytes on every ABI we
        for alt in "hilq":                  # support, but check anyway
            if array.array(alt).itemsize == size:
                return alt
    return code


def _formats(dtype):
    """Buffer-protocol format strings meaning ``dtype`` (native order)."""
    code, size, is_int = _DTYPES[dtype]
    if not is_int:
        return {code, "<" + code, "=" + code, "@" + code}
    fmts = set()
    for c in "bhilqBHILQ":
        if ctypes.sizeof(getattr(ctypes, {
                "b": "c_byte", "h": "c_short", "i": "c_int", "l": "c_long",
                "q": "c_longlong", "B": "c_ubyte", "H": "c_ushort",
                "I": "c_uint", "L": "c_ulong", "Q": "c_ulonglong"}[c])) != size:
            continue
        if (c.isupper()) != (dtype == "uint8"):
            continue
        fmts.update({c, "<" + c, "=" + c, "@" + c})
    return fmts


_RAW_FORMATS = {"B", "b", "c"}  # bytearray / bytes: raw bytes of the dtype


def _shape_str(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _prod(dims):
    n = 1
    for d in dims:
        n *= d
    return n


class Buf:
    """One array ready for a C call.

    ``ptr``: what to pass for the ``c_void_p`` argument (an int address, or
    None for an empty array); ``n``: element count; ``shape``: the shape
    (tuple); ``obj``: the object holding the memory (kept alive here: keep
    the Buf until the call returns); ``dtype``: the dtype name."""

    __slots__ = ("ptr", "n", "shape", "obj", "dtype", "_keep")

    def __init__(self, ptr, n, shape, obj, dtype, keep=None):
        self.ptr, self.n, self.shape = ptr, n, tuple(shape)
        self.obj, self.dtype, self._keep = obj, dtype, keep

    def __repr__(self):
        return "Buf(%s %s)" % (self.dtype, _shape_str(self.shape))


def _match_shape(name, got, expected):
    """Check ``got`` (a tuple) against ``expected`` (ints and None
    wildcards); returns got."""
    if expected is None:
        return tuple(got)
    if len(got) != len(expected) or any(
            e is not None and e != g for g, e in zip(got, expected)):
        raise ValueError("%s: expected shape %s, got %s" % (
            name, _shape_str(expected), _shape_str(tuple(got))))
    return tuple(got)


def _infer_flat(name, n, expected):
    """Shape of a flat buffer of n elements against ``expected``."""
    if expected is None:
        return (n,)
    known = [d for d in expected if d is not None]
    unknown = len(expected) - len(known)
    k = _prod(known)
    if unknown == 0:
        if n != k:
            raise ValueError("%s: expected shape %s (%d elements), got a flat "
                             "buffer of %d elements" % (
                                 name, _shape_str(expected), k, n))
        return tuple(expected)
    if unknown > 1:
        raise ValueError(
            "%s: a flat buffer of %d elements is ambiguous for shape %s; give "
            "the shape with memoryview(buf).cast(format, shape) or use numpy"
            % (name, n, _shape_str(expected)))
    if k == 0 or n % k:
        raise ValueError("%s: %d elements do not fit shape %s" % (
            name, n, _shape_str(expected)))
    return tuple(n // k if d is None else d for d in expected)


def _numpy_input(a, dtype, name):
    np = _np
    want = np.dtype(dtype)
    if isinstance(a, np.ndarray):
        if a.dtype == want and a.flags.c_contiguous:
            return a
        kind = a.dtype.kind
    else:
        probe = np.asarray(a)
        kind = probe.dtype.kind
        a = probe
    if kind == "c":
        raise TypeError("%s: complex data where %s is expected" % (name, dtype))
    if _DTYPES[dtype][2] and kind == "f":
        raise TypeError("%s: floating-point data where %s is expected "
                        "(convert it explicitly, e.g. a.astype(numpy.%s))" % (
                            name, dtype, dtype))
    if kind not in "biuf":
        raise TypeError("%s: cannot use %s data as %s" % (name, a.dtype, dtype))
    return np.ascontiguousarray(a, dtype=want)


def _memoryview(obj, name):
    try:
        return memoryview(obj)
    except TypeError:
        return None


def _buffer_input(mv, dtype, name, writable):
    """A memoryview -> (ctypes object holding it, n, shape)."""
    _, size, _ = _DTYPES[dtype]
    fmt = mv.format
    if fmt in _formats(dtype):
        if mv.itemsize != size:
            raise TypeError("%s: item size %d, %s needs %d" % (
                name, mv.itemsize, dtype, size))
        shape = mv.shape if mv.ndim > 0 else (1,)
        n = _prod(shape)
    elif fmt in _RAW_FORMATS and mv.itemsize == 1:
        if mv.nbytes % size:
            raise ValueError("%s: %d bytes are not a whole number of %s" % (
                name, mv.nbytes, dtype))
        n = mv.nbytes // size
        shape = (n,)
    else:
        raise TypeError("%s: buffer format %r is not %s (use array.array(%r))"
                        % (name, fmt, dtype, _typecode(dtype)))
    if not mv.c_contiguous:
        raise ValueError("%s: the buffer is not C-contiguous" % name)
    nbytes = n * size
    if mv.readonly:
        if writable:
            raise ValueError("%s: the buffer is read-only" % name)
        holder = (ctypes.c_char * max(nbytes, 1)).from_buffer_copy(
            mv.tobytes() if nbytes else b"\0")
    elif nbytes == 0:
        holder = (ctypes.c_char * 1)()
    else:
        flat = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
        holder = (ctypes.c_char * nbytes).from_buffer(flat)
    return holder, n, tuple(shape)


def _numpy_like(obj):
    if isinstance(obj, _np.ndarray) or isinstance(obj, (list, tuple)):
        return True
    if isinstance(obj, (bytes, bytearray, memoryview, array.array)):
        return False
    return hasattr(obj, "__array__") or hasattr(obj, "__array_interface__")


def as_input(obj, dtype="float32", shape=None, name="array"):
    """An array libelm will read, as a :class:`Buf`.

    ``shape`` is the expected shape with None for free dimensions, e.g.
    ``(None, None, n_in)``; None accepts any shape. Raises ValueError on a
    shape mismatch, TypeError on a dtype that cannot be used (see the module
    docstring for the conversion rules)."""
    if dtype not in _DTYPES:
        raise ValueError("unknown dtype %r" % (dtype,))
    if obj is None:
        raise ValueError("%s: None is not an array" % name)
    if _np is not None and _numpy_like(obj):
        a = _numpy_input(obj, dtype, name)
        got = _match_shape(name, a.shape, shape)
        return Buf(a.ctypes.data if a.size else None, a.size, got, a, dtype)
    if isinstance(obj, (list, tuple)):
        flat = _flatten(obj, name)
        code = _typecode(dtype)
        if _DTYPES[dtype][2] and any(isinstance(v, float) for v in flat):
            raise TypeError("%s: floating-point data where %s is expected" % (
                name, dtype))
        arr = array.array(code, flat)
        nested = _nested_shape(obj)
        holder, n, _ = _buffer_input(memoryview(arr), dtype, name, False)
        got = _match_shape(name, nested, shape) if len(nested) > 1 or (
            shape is not None and len(shape) == 1) else _infer_flat(
                name, n, shape)
        return Buf(ctypes.addressof(holder) if n else None, n, got, arr, dtype,
                   holder)
    mv = _memoryview(obj, name)
    if mv is None:
        raise TypeError("%s: expected an array (numpy array, array.array, "
                        "memoryview, bytearray or list), got %s" % (
                            name, type(obj).__name__))
    holder, n, bshape = _buffer_input(mv, dtype, name, False)
    if mv.ndim > 1:
        got = _match_shape(name, bshape, shape)
    else:
        got = _infer_flat(name, n, shape)
    return Buf(ctypes.addressof(holder) if n else None, n, got, obj, dtype,
               holder)


def as_output(obj, dtype="float32", shape=None, name="out"):
    """An array libelm will write (``out=`` arguments), as a :class:`Buf`.
    Never converted: must be writable, C-contiguous, exact dtype, exact
    shape (flat buffers: exact element count)."""
    if _np is not None and isinstance(obj, _np.ndarray):
        if obj.dtype != _np.dtype(dtype):
            raise TypeError("%s: dtype %s, expected %s (outputs are not "
                            "converted)" % (name, obj.dtype, dtype))
        if not obj.flags.c_contiguous:
            raise ValueError("%s: the array is not C-contiguous" % name)
        if not obj.flags.writeable:
            raise ValueError("%s: the array is read-only" % name)
        got = _match_shape(name, obj.shape, shape)
        return Buf(obj.ctypes.data if obj.size else None, obj.size, got, obj,
                   dtype)
    mv = _memoryview(obj, name)
    if mv is None:
        raise TypeError("%s: expected a writable array, got %s" % (
            name, type(obj).__name__))
    holder, n, bshape = _buffer_input(mv, dtype, name, True)
    got = _match_shape(name, bshape, shape) if mv.ndim > 1 else \
        _infer_flat(name, n, shape)
    return Buf(ctypes.addressof(holder) if n else None, n, got, obj, dtype,
               holder)


def _flatten(seq, name):
    out = []
    stack = [iter(seq)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, (list, tuple)):
                stack.append(iter(v))
                break
            if not isinstance(v, (int, float)):
                raise TypeError("%s: %r is not a number" % (name, v))
            out.append(v)
        else:
            stack.pop()
    return out


def _nested_shape(seq):
    shape = []
    while isinstance(seq, (list, tuple)):
        shape.append(len(seq))
        if not seq:
            break
        seq = seq[0]
    return tuple(shape)


def empty(shape, dtype="float32", use_numpy=None):
    """A new array of ``shape`` for libelm to fill: numpy.empty when numpy is
    available (``use_numpy`` None or True), else a flat zero-filled
    ``array.array`` of the element count (row-major)."""
    if use_numpy is None:
        use_numpy = HAVE_NUMPY
    if use_numpy:
        if _np is None:
            raise RuntimeError("numpy is not installed")
        return _np.empty(tuple(shape), dtype=dtype)
    return array.array(_typecode(dtype), bytes(_prod(shape) *
                                               _DTYPES[dtype][1]))


def zeros(shape, dtype="float32", use_numpy=None):
    """Like :func:`empty`, zero-filled."""
    if use_numpy is None:
        use_numpy = HAVE_NUMPY
    if use_numpy:
        if _np is None:
            raise RuntimeError("numpy is not installed")
        return _np.zeros(tuple(shape), dtype=dtype)
    return empty(shape, dtype, use_numpy=False)


def output(out, shape, dtype="float32", name="out", use_numpy=None):
    """(array, Buf) for an output of ``shape``: ``out`` checked with
    :func:`as_output` when given, else a new array from :func:`empty`."""
    if out is None:
        out = empty(shape, dtype, use_numpy)
        if isinstance(out, array.array):
            holder, n, _ = _buffer_input(memoryview(out), dtype, name, True)
            return out, Buf(ctypes.addressof(holder) if n else None, n, shape,
                            out, dtype, holder)
        return out, Buf(out.ctypes.data if out.size else None, out.size,
                        shape, out, dtype)
    return out, as_output(out, dtype, shape, name)


def like_input(x, use_numpy=None):
    """Whether results for input ``x`` should be numpy arrays: True for
    numpy input; for other input, numpy when available unless
    ``use_numpy`` says otherwise. Buffers in give array.array out when
    ``use_numpy`` is False."""
    if use_numpy is not None:
        return bool(use_numpy)
    if _np is not None and isinstance(x, _np.ndarray):
        return True
    if isinstance(x, (array.array, memoryview, bytearray, bytes)):
        return False
    return HAVE_NUMPY


def shape_of(obj):
    """Shape of a numpy array, a shaped memoryview, or (n,) of a flat
    buffer."""
    if _np is not None and isinstance(obj, _np.ndarray):
        return obj.shape
    if isinstance(obj, memoryview):
        return obj.shape
    if isinstance(obj, array.array):
        return (len(obj),)
    return (len(memoryview(obj).cast("B")),)


def reshape(a, shape):
    """numpy arrays are reshaped; flat array.array is returned as is
    (row-major, the shape is the caller's to know)."""
    if _np is not None and isinstance(a, _np.ndarray):
        return a.reshape(shape)
    return a


def int64_array(values):
    """A ctypes ``int64_t[len(values)]`` (for shape arguments)."""
    return (ctypes.c_int64 * len(values))(*values)


def has_nonfinite(buf):
    """Whether a float Buf holds NaN/Inf (used only for messages)."""
    if buf.dtype not in ("float32", "float64") or not buf.n:
        return False
    if _np is not None and isinstance(buf.obj, _np.ndarray):
        return not bool(_np.isfinite(buf.obj).all())
    return not all(math.isfinite(v) for v in memoryview(buf.obj).cast("B")
                   .cast(_typecode(buf.dtype)))



def events(rows, offsets, channels, values):
    """CSR event input (the ``*_events`` calls) as buffers: offsets
    (rows + 1,) int64, channels int32, values float32 or None. libelm
    checks their contents; this makes sure channels and values hold the
    offsets[-1] entries libelm will read."""
    off = as_input(offsets, "int64", (rows + 1,), "offsets")
    n = max(ctypes.c_int64.from_address(off.ptr + 8 * rows).value, 0)  # offsets[-1]
    ch = as_input(channels if channels is not None else [], "int32", (None,), "channels")
    val = None if values is None else as_input(values, "float32", (None,), "values")
    if ch.n < n or (val is not None and val.n < n):
        raise ValueError("channels and values need offsets[-1] = %d entries, got %d and %s"
                         % (n, ch.n, "None" if val is None else val.n))
    return off, ch, val
