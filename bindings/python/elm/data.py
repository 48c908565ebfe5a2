"""Datasets: batches of sequences from arrays, files and Python code
(elm.h section 9, docs/datasets.md).

A :class:`Dataset` wraps one ``elm_dataset``. Every batch of ``B`` samples
is a :class:`Batch` of

* ``x``       (B, T, n_in)      float32, the input sequences;
* ``target``  (B, T, n_target)  float32, or None when the data has none;
* ``labels``  (B, n_label)      int32, or None when the data has none
  (n_label 1: one label per sample; n_label T: one per step);
* ``lengths`` (B,)              int64, the valid steps of each sample
  (0 for the padding samples of a last partial batch);
* ``count``   the number of real samples (0 at the end of the epoch).

Arrays are numpy arrays when numpy is installed, else flat ``array.array``
(row-major, in the shapes above).

Lifetimes. The C library *borrows* the arrays given to
:meth:`Dataset.from_arrays` and :meth:`Dataset.from_events` and the
callbacks of :meth:`Dataset.from_python`; the Dataset object keeps them
alive until :meth:`Dataset.close` (or garbage collection). Split halves
keep the parent's arrays and callbacks too, since they read the same
source.
"""

import collections
import ctypes
import signal
import threading

from . import _buffers
from . import _capi
from ._capi import ElmError, check
from .core import Handle

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None

__all__ = ["Batch", "Dataset", "SHUFFLE_DEFAULT"]

Batch = collections.namedtuple("Batch", "x target labels lengths count")
Batch.__doc__ = """One batch: x (B, T, n_in) float32, target (B, T, n_target)
float32 or None, labels (B, n_label) int32 or None, lengths (B,) int64,
count = the number of real (non-padding) samples."""

SHUFFLE_DEFAULT = True

_SEQUENCES = {"pixels": _capi.IdxSequence.PIXELS, "rows": _capi.IdxSequence.ROWS}


def _lib():
    return _capi.lib()


def _size(value):
    """A non-negative int for a size_t argument (TypeError/ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = value.__index__()
        except AttributeError:
            raise TypeError("expected an integer, got %r" % (value,)) from None
    if value < 0:
        raise ValueError("expected a non-negative integer, got %d" % value)
    return value


def _shape(obj):
    """Shape of an array-like: numpy arrays, nested lists, buffers."""
    if _np is not None and not isinstance(obj, (bytes, bytearray, memoryview)):
        shape = getattr(obj, "shape", None)
        if shape is not None:
            return tuple(shape)
    if isinstance(obj, (list, tuple)):
        return _buffers._nested_shape(obj)
    return tuple(_buffers.shape_of(obj))


# ---------------------------------------------------------------------------
# Ctrl-C while C code calls back into Python on this thread
#
# A SIGINT arriving while libelm runs a Python callback (a Python source,
# the progress callback of fit) would raise KeyboardInterrupt at the very
# first instruction of the callback, before its try block; ctypes would
# then print it and return garbage to C. Around such calls, on the main
# thread, SIGINT only sets a flag; the callbacks see the flag and stop, and
# KeyboardInterrupt is raised once the C call has returned.

class _DeferredInterrupt:
    def __init__(self):
        self.pending = False
        self._old = None

    def _handler(self, signum, frame):
        self.pending = True

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        return False

    def raise_pending(self):
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


# ---------------------------------------------------------------------------
# Python sources

def _view(ptr, ctype, shape):
    """The C buffer at ``ptr`` (a ctypes pointer, possibly NULL) as a
    writable array of ``shape``: numpy when available, else a shaped
    memoryview. None for NULL."""
    if not ptr:
        return None
    n = 1
    for d in shape:
        n *= d
    if _np is not None:
        return _np.ctypeslib.as_array(ptr, shape=tuple(shape))
    raw = (ctype * n).from_address(ctypes.addressof(ptr.contents))
    code = {ctypes.c_float: "f", ctypes.c_int32: "i"}[ctype]
    return memoryview(raw).cast("B").cast(code, tuple(shape))


class _SourceErrors:
    """Exceptions raised inside the callbacks of one Python source, waiting
    to be re-raised by the Python call that ran into them. Shared by every
    dataset reading the source (split halves). Callbacks may run on the
    prefetch worker thread, so appends and takes happen under the GIL only
    (list operations are atomic)."""

    def __init__(self):
        self.items = []

    def store(self, exc):
        self.items.append(exc)

    def take(self):
        """The most recent stored exception (clearing all), or None."""
        if not self.items:
            return None
        exc = self.items[-1]
        del self.items[:]
        return exc

    def clear(self):
        del self.items[:]


def _length_of(result, T, what):
    if result is None:
        return T
    if isinstance(result, bool) or not isinstance(result, int):
        try:
            result = result.__index__()
        except AttributeError:
            raise TypeError("%s must return the sample's length (an int in "
                            "[1, %d]) or None for all %d steps, got %r"
                            % (what, T, T, result)) from None
    if not 1 <= result <= T:
        raise ValueError("%s returned length %d, outside [1, T = %d]"
                         % (what, result, T))
    return result


def _make_source(obj, N, T, n_in, n_target, n_label, errors, interrupt):
    """The elm_source struct and the callback objects for ``obj``. The
    callbacks are closures over obj and the shapes, not over any Dataset,
    so no reference cycle keeps a dataset alive. Returns (Source, keep)."""
    E_INVALID = int(_capi.Status.E_INVALID)
    x_shape, t_shape, l_shape = (T, n_in), (T, n_target), (n_label,)

    def fail(exc):
        errors.store(exc)
        return E_INVALID

    def arrays(x, target, labels):
        return (_view(x, ctypes.c_float, x_shape),
                _view(target, ctypes.c_float, t_shape) if n_target else None,
                _view(labels, ctypes.c_int32, l_shape) if n_label else None)

    src = _capi.Source(N=N, T=T, n_in=n_in, n_target=n_target, n_label=n_label)
    keep = []
    if hasattr(obj, "read"):
        def read(user, epoch, i, x, target, labels, length):
            try:
                if interrupt.pending:
                    raise KeyboardInterrupt
                xa, ta, la = arrays(x, target, labels)
                length[0] = _length_of(obj.read(epoch, i, xa, ta, la), T,
                                       "%s.read()" % type(obj).__name__)
                return 0
            except BaseException as exc:  # noqa: B902 - must not reach C
                return fail(exc)
        src.read = _capi.SOURCE_READ_FN(read)
        keep.append(src.read)
    else:
        def next_(user, x, target, labels, length):
            try:
                if interrupt.pending:
                    raise KeyboardInterrupt
                xa, ta, la = arrays(x, target, labels)
                result = obj.next(xa, ta, la)
                if result is None:
                    return 1  # end of the epoch
                length[0] = _length_of(result, T, "%s.next()" % type(obj).__name__)
                return 0
            except StopIteration:
                return 1
            except BaseException as exc:  # noqa: B902
                return fail(exc)
        src.next = _capi.SOURCE_NEXT_FN(next_)
        keep.append(src.next)
        if hasattr(obj, "reset"):
            def reset(user, epoch):
                try:
                    if interrupt.pending:
                        raise KeyboardInterrupt
                    obj.reset(epoch)
                    return 0
                except BaseException as exc:  # noqa: B902
                    return fail(exc)
            src.reset = _capi.SOURCE_RESET_FN(reset)
            keep.append(src.reset)
    return src, keep


class _SourceKeep:
    """What a C dataset borrows from Python: arrays (as _buffers.Buf) or a
    Python source's callbacks and error store. Shared by split halves."""

    def __init__(self, bufs=(), callbacks=(), obj=None, errors=None):
        self.bufs = list(bufs)
        self.callbacks = list(callbacks)
        self.obj = obj
        self.errors = errors
        self.interrupt = None


# ---------------------------------------------------------------------------
# Dataset

class Dataset(Handle):
    """One ``elm_dataset``: an iterator over batches of one source.

    Create it with a class method (:meth:`from_arrays`, :meth:`from_events`,
    :meth:`from_python`, :meth:`open_shd`, :meth:`open_shd_adding`,
    :meth:`open_neuronio`, :meth:`open_idx`, :meth:`open_listops`,
    :meth:`generate_listops`) or :meth:`split`. Close it with :meth:`close`
    or a ``with`` block (garbage collection also frees it).

    Options (properties, applied at once; shuffle and seed take effect at
    the next :meth:`start_epoch`): ``shuffle`` (default True), ``seed``
    (default 0), ``drop_last`` (default False: pad the last batch),
    ``prefetch`` (default False: build the next batch on a worker thread).
    libelm has no getter for them: the values read back are the ones set
    through this object (or known from how it was created).
    """

    _free_fn = "elm_dataset_free"

    def __init__(self, handle, keep=None, what="dataset", options=None):
        """Wraps an owned ``elm_dataset *`` (an int address or c_void_p).
        Use the class methods instead."""
        if isinstance(handle, ctypes.c_void_p):
            handle = handle.value
        self._own(handle)
        self._keep = keep if keep is not None else _SourceKeep()
        self._what = what
        self._options = {"shuffle": True, "seed": 0, "drop_last": False,
                         "prefetch": False}
        if options:
            self._options.update(options)
        self._dims = {}
        for name, dim in (("N", _capi.DatasetDim.SAMPLES),
                          ("T", _capi.DatasetDim.STEPS),
                          ("n_in", _capi.DatasetDim.INPUTS),
                          ("n_target", _capi.DatasetDim.TARGETS),
                          ("n_label", _capi.DatasetDim.LABELS)):
            v = ctypes.c_size_t()
            check(_lib().elm_dataset_size(handle, dim, ctypes.byref(v)),
                  "elm_dataset_size")
            self._dims[name] = v.value

    def close(self):
        """Free the C dataset (stopping its prefetch worker). Idempotent.
        The arrays and callbacks it borrowed are released with the last
        dataset reading them (split halves share them)."""
        Handle.close(self)
        self._keep = None

    def __repr__(self):
        if self.closed:
            return "<elm.Dataset %s (closed)>" % self._what
        return "<elm.Dataset %s N=%d T=%d n_in=%d n_target=%d n_label=%d>" % (
            self._what, self.N, self.T, self.n_in, self.n_target, self.n_label)

    # -- constructors -----------------------------------------------------

    @classmethod
    def from_arrays(cls, x, target=None, labels=None, lengths=None):
        """N samples of T steps held in memory.

        x (N, T, n_in) float32; target (N, T, n_target) float32 or None;
        labels (N,) or (N, n_label) int32 or None (n_label 1: a label per
        sample, T: one per step); lengths (N,) int64 in [1, T] or None for
        all T. Arrays of the exact dtype and C order are borrowed without a
        copy (the C library reads them at every batch, and refuses batches
        once the lengths were changed); others are converted once. The
        dataset keeps them alive.
        """
        xb = _buffers.as_input(x, "float32", (None, None, None), "x")
        N, T, n_in = xb.shape
        bufs = [xb]
        tp, n_target = None, 0
        if target is not None:
            tb = _buffers.as_input(target, "float32", (N, T, None), "target")
            n_target = tb.shape[2]
            tp = tb.ptr
            bufs.append(tb)
        lp, n_label = None, 0
        if labels is not None:
            shape = _shape(labels)
            want = (N,) if len(shape) == 1 else (N, None)
            lb = _buffers.as_input(labels, "int32", want, "labels")
            n_label = 1 if len(lb.shape) == 1 else lb.shape[1]
            lp = lb.ptr
            bufs.append(lb)
        np_ = None
        if lengths is not None:
            nb = _buffers.as_input(lengths, "int64", (N,), "lengths")
            np_ = nb.ptr
            bufs.append(nb)
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_from_arrays(N, T, n_in, xb.ptr, tp, n_target,
                                             lp, n_label, np_, ctypes.byref(out)),
              "elm_dataset_from_arrays")
        return cls(out, _SourceKeep(bufs=bufs), "arrays")

    @classmethod
    def from_events(cls, offsets, times, channels, n_in, dt_ms, duration_ms,
                    labels=None):
        """Event lists (spike trains) binned into counts.

        Sample i owns events ``offsets[i]:offsets[i+1]``; ``offsets`` (N+1,)
        int64 starting at 0, non-decreasing; ``times`` (E,) float32 in ms,
        finite and >= 0; ``channels`` (E,) int32 in [0, n_in); ``labels``
        (N,) int32 or None. x[t, c] counts the events of channel c with
        t * dt_ms <= time < (t + 1) * dt_ms; events at or after
        duration_ms are cut; T = ceil(duration_ms / dt_ms). Borrowed like
        :meth:`from_arrays`.
        """
        ob = _buffers.as_input(offsets, "int64", (None,), "offsets")
        if ob.n < 1:
            raise ValueError("offsets: needs N + 1 >= 1 entries")
        N = ob.n - 1
        tb = _buffers.as_input(times, "float32", (None,), "times")
        cb = _buffers.as_input(channels, "int32", (tb.n,), "channels")
        bufs = [ob, tb, cb]
        lp = None
        if labels is not None:
            lb = _buffers.as_input(labels, "int32", (N,), "labels")
            lp = lb.ptr
            bufs.append(lb)
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_from_events(N, _size(n_in), ob.ptr, tb.ptr, cb.ptr,
                                             lp, float(dt_ms), float(duration_ms),
                                             ctypes.byref(out)),
              "elm_dataset_from_events")
        return cls(out, _SourceKeep(bufs=bufs), "events")

    @classmethod
    def from_python(cls, obj, T=None, n_in=None, n_target=None, n_label=None,
                    N=None):
        """A source written in Python.

        ``obj`` is either

        * random access: ``len(obj)`` samples (N >= 1) and
          ``obj.read(epoch, i, x, target, labels)``, which fills sample i
          into the zero-filled arrays x (T, n_in) float32, target
          (T, n_target) float32 or None, labels (n_label,) int32 or None,
          and returns the sample's length in [1, T] (None: T). Shuffling,
          splits and prefetch work;
        * streaming: ``obj.next(x, target, labels)`` fills the next sample
          and returns its length (None, or raising StopIteration, ends the
          epoch); optional ``obj.reset(epoch)`` starts an epoch; ``N`` is
          ``len(obj)`` when it has one, else 0 (unknown). Samples come in
          the source's own order (shuffle is ignored).

        The shapes T, n_in, n_target (default 0), n_label (default 0) are
        taken from the keyword arguments or else from attributes of the
        same names on ``obj``. The arrays passed to the callbacks are views
        of libelm's buffers, valid only during the call: fill them in
        place, do not keep them.

        An exception raised by a callback does not reach C: the callback
        fails, and the Python call that ran into it (:meth:`next`,
        :meth:`start_epoch`, ``Trainer.fit`` ...) raises that exception.
        With prefetch on, callbacks run on libelm's worker thread (holding
        the GIL meanwhile).
        """
        def dim(name, given, default=None):
            value = given if given is not None else getattr(obj, name, default)
            if value is None:
                raise TypeError("from_python: give %s= or an attribute %s on "
                                "the source" % (name, name))
            return _size(value)

        T, n_in = dim("T", T), dim("n_in", n_in)
        n_target, n_label = dim("n_target", n_target, 0), dim("n_label", n_label, 0)
        random_access = hasattr(obj, "read")
        if not random_access and not hasattr(obj, "next"):
            raise TypeError("from_python: the source needs read(epoch, i, x, "
                            "target, labels) or next(x, target, labels)")
        if N is None:
            try:
                N = len(obj)
            except TypeError:
                if random_access:
                    raise TypeError("from_python: a random-access source needs "
                                    "len() or N=") from None
                N = 0
        errors = _SourceErrors()
        interrupt = _DeferredInterrupt()
        src, callbacks = _make_source(obj, _size(N), T, n_in, n_target, n_label,
                                      errors, interrupt)
        keep = _SourceKeep(callbacks=callbacks, obj=obj, errors=errors)
        keep.interrupt = interrupt
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_from_source(ctypes.byref(src), ctypes.byref(out)),
              "elm_dataset_from_source")
        return cls(out, keep, "python:" + type(obj).__name__)

    @classmethod
    def open_shd(cls, path, dt_ms=1.0, max_time_ms=0.0):
        """Spiking Heidelberg Digits (shd_train.h5 / shd_test.h5): x
        (T = max_time_ms / dt_ms, 700) spike counts, labels (1,) in [0, 20).
        max_time_ms 0 = 1000 ms. Needs libelm built with HDF5."""
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_open_shd(_capi.path_arg(path), float(dt_ms),
                                          float(max_time_ms), ctypes.byref(out)),
              "elm_dataset_open_shd")
        return cls(out, what="shd")

    @classmethod
    def open_shd_adding(cls, path, dt_ms=1.0, max_time_ms=0.0,
                        samples_per_epoch=1000):
        """SHD-Adding: pairs of SHD samples concatenated in time, x (2T,
        700), label (1,) = (l1 mod 10) + (l2 mod 10), 19 classes;
        ``samples_per_epoch`` pairs drawn from (seed, epoch, sample)."""
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_open_shd_adding(
            _capi.path_arg(path), float(dt_ms), float(max_time_ms),
            _size(samples_per_epoch), ctypes.byref(out)),
            "elm_dataset_open_shd_adding")
        return cls(out, what="shd_adding")

    @classmethod
    def open_neuronio(cls, path, window_ms=500, samples_per_epoch=1000):
        """NeuronIO windows from a converted file (``python3 -m elm.neuronio
        convert``): x (window_ms, 1278) in {-1, 0, +1}, target (window_ms,
        2) = (spike, (min(soma, -55) + 67.7) * 0.1); ``samples_per_epoch``
        windows drawn from (seed, epoch, sample)."""
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_open_neuronio(_capi.path_arg(path),
                                               _size(window_ms),
                                               _size(samples_per_epoch),
                                               ctypes.byref(out)),
              "elm_dataset_open_neuronio")
        return cls(out, what="neuronio")

    @classmethod
    def open_idx(cls, images, labels, sequence="pixels", permute=False,
                 permute_seed=0):
        """IDX image files (MNIST, Fashion-MNIST; gzip or raw) as sequences
        of pixels / 255: ``sequence`` "pixels" gives x (rows * cols, 1),
        "rows" gives x (rows, cols); labels (1,). ``permute`` applies one
        fixed pixel permutation drawn from ``permute_seed``."""
        if isinstance(sequence, str):
            try:
                seq = _SEQUENCES[sequence]
            except KeyError:
                raise ValueError("sequence must be 'pixels' or 'rows', got %r"
                                 % sequence) from None
        else:
            seq = int(sequence)
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_open_idx(_capi.path_arg(images),
                                          _capi.path_arg(labels), seq,
                                          1 if permute else 0,
                                          _size(permute_seed), ctypes.byref(out)),
              "elm_dataset_open_idx")
        return cls(out, what="idx")

    @classmethod
    def open_listops(cls, path, max_length=0):
        """LRA ListOps from a TSV file: x (T, 15) one-hot tokens, labels
        (1,) in [0, 10), lengths per sample; T = max_length (0: the longest
        sequence in the file)."""
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_open_listops(_capi.path_arg(path),
                                              _size(max_length), ctypes.byref(out)),
              "elm_dataset_open_listops")
        return cls(out, what="listops")

    @classmethod
    def generate_listops(cls, N, seed=0, min_length=1, max_length=2000):
        """N ListOps expressions drawn once (sample i from (seed, i)) with
        token counts in [min_length, max_length] (LRA: 501, 1999); T =
        max_length."""
        out = ctypes.c_void_p()
        check(_lib().elm_dataset_generate_listops(_size(N), _size(seed),
                                                  _size(min_length),
                                                  _size(max_length),
                                                  ctypes.byref(out)),
              "elm_dataset_generate_listops")
        return cls(out, what="listops_generate")

    def split(self, n_val, seed=0):
        """(train, val): a deterministic split by a permutation drawn from
        ``seed``; val holds ``n_val`` samples (1 <= n_val < N), train the
        rest, each in increasing sample order. Both read this dataset's
        source and start with its settings; this dataset stays usable. Not
        for streaming Python sources."""
        train, val = ctypes.c_void_p(), ctypes.c_void_p()
        check(_lib().elm_dataset_split(self._h, _size(n_val), _size(seed),
                                       ctypes.byref(train), ctypes.byref(val)),
              "elm_dataset_split")
        opts = dict(self._options)
        return (Dataset(train, self._keep, self._what + "[train]", opts),
                Dataset(val, self._keep, self._what + "[val]", opts))

    # -- sizes ------------------------------------------------------------

    @property
    def N(self):
        """Samples per epoch (0: a streaming source of unknown size)."""
        return self._dims["N"]

    @property
    def T(self):
        """Steps per sample (the batch's T)."""
        return self._dims["T"]

    @property
    def n_in(self):
        return self._dims["n_in"]

    @property
    def n_target(self):
        """Target channels per step (0: none)."""
        return self._dims["n_target"]

    @property
    def n_label(self):
        """Labels per sample (0: none, 1: one per sample, T: one per step)."""
        return self._dims["n_label"]

    def __len__(self):
        return self._dims["N"]

    def num_batches(self, B):
        """Batches of B samples in one epoch (the last one padded unless
        drop_last); None for a streaming source of unknown size."""
        B = _size(B)
        if self.N == 0 and self._keep is not None and self._keep.obj is not None:
            return None
        return self.N // B if self.drop_last else -(-self.N // B)

    # -- options ----------------------------------------------------------

    def _set(self, name, key, value):
        check(_lib().elm_dataset_set(self._h, key, float(value)),
              "elm_dataset_set(%s)" % name)

    def _get(self, key):
        v = ctypes.c_double()
        check(_lib().elm_dataset_get(self._h, key, ctypes.byref(v)), "elm_dataset_get")
        return v.value

    @property
    def shuffle(self):
        """Shuffle the order every epoch (from seed and epoch)."""
        return bool(self._get(_capi.DatasetOption.SHUFFLE))

    @shuffle.setter
    def shuffle(self, value):
        self._set("shuffle", _capi.DatasetOption.SHUFFLE, bool(value))

    @property
    def seed(self):
        """Seed of the order and of random sources' draws, in [0, 2^53]."""
        return int(self._get(_capi.DatasetOption.SEED))

    @seed.setter
    def seed(self, value):
        self._set("seed", _capi.DatasetOption.SEED, _size(value))

    @property
    def drop_last(self):
        """Drop the last partial batch instead of padding it."""
        return bool(self._get(_capi.DatasetOption.DROP_LAST))

    @drop_last.setter
    def drop_last(self, value):
        self._set("drop_last", _capi.DatasetOption.DROP_LAST, bool(value))

    @property
    def prefetch(self):
        """Build the next batch on a worker thread (identical batches)."""
        return bool(self._get(_capi.DatasetOption.PREFETCH))

    @prefetch.setter
    def prefetch(self, value):
        self._set("prefetch", _capi.DatasetOption.PREFETCH, bool(value))

    def set(self, **options):
        """Set several options at once: ``ds.set(shuffle=False, seed=3)``."""
        for name, value in options.items():
            if name not in self._options:
                raise TypeError("unknown dataset option %r (have %s)" % (
                    name, ", ".join(self._options)))
            setattr(self, name, value)
        return self

    # -- iteration --------------------------------------------------------

    def _call(self, fn, *args, what):
        """Run a C call that may run Python source callbacks; re-raise a
        callback's exception in place of the C error."""
        keep = self._keep
        errors = keep.errors if keep is not None else None
        if errors is None:
            check(fn(*args), what)
            return
        interrupt = keep.interrupt
        with interrupt:
            rc = fn(*args)
        if rc != 0:
            stored = errors.take()
            try:
                check(rc, what)
            except ElmError as err:
                if stored is not None:
                    raise stored from err
                raise
        interrupt.raise_pending()

    def start_epoch(self, epoch):
        """Start epoch ``epoch``: its order is a function of (seed, epoch);
        shuffle and seed changes apply here. A :meth:`next` before any
        start_epoch reads epoch 0."""
        self._call(_lib().elm_dataset_start_epoch, self._h, _size(epoch),
                   what="elm_dataset_start_epoch")
        if self._keep is not None and self._keep.errors is not None:
            self._keep.errors.clear()  # batches built ahead were discarded

    def new_batch(self, B, use_numpy=None):
        """Arrays for a batch of B samples (a :class:`Batch` with count 0),
        to pass as ``out=`` to :meth:`next`."""
        B = _size(B)
        T, n_in, nt, nl = self.T, self.n_in, self.n_target, self.n_label
        return Batch(_buffers.empty((B, T, n_in), "float32", use_numpy),
                     _buffers.empty((B, T, nt), "float32", use_numpy) if nt else None,
                     _buffers.empty((B, nl), "int32", use_numpy) if nl else None,
                     _buffers.empty((B,), "int64", use_numpy), 0)

    def next(self, B, out=None, use_numpy=None):
        """The next batch of B samples as a :class:`Batch`. The last batch
        of an epoch is padded (zero samples of length 0) unless drop_last;
        at the end of the epoch ``count`` is 0 (and stays 0).

        ``out``: a Batch from :meth:`new_batch` (or arrays of those shapes
        and dtypes) to fill instead of allocating. Arrays are numpy when
        available (``use_numpy`` None or True), else flat array.array. A
        failure consumes nothing: the same call can be retried.
        """
        B = _size(B)
        if B == 0:
            raise ValueError("batch size B must be >= 1")
        T, n_in, nt, nl = self.T, self.n_in, self.n_target, self.n_label
        if out is None:
            out = self.new_batch(B, use_numpy)
        x, xb = out.x, _buffers.as_output(out.x, "float32", (B, T, n_in), "x")
        tb = _buffers.as_output(out.target, "float32", (B, T, nt), "target") \
            if nt else None
        lb = _buffers.as_output(out.labels, "int32", (B, nl), "labels") \
            if nl else None
        nb = _buffers.as_output(out.lengths, "int64", (B,), "lengths")
        count = ctypes.c_size_t()
        self._call(_lib().elm_dataset_next, self._h, B, xb.ptr,
                   tb.ptr if tb else None, lb.ptr if lb else None, nb.ptr,
                   ctypes.byref(count), what="elm_dataset_next")
        return Batch(x, out.target if nt else None, out.labels if nl else None,
                     out.lengths, count.value)

    def batches(self, B, epoch=0, reuse=False, use_numpy=None):
        """Iterate over the batches of epoch ``epoch`` (calls
        :meth:`start_epoch` first) until the epoch ends; the last batch may
        be padded (see ``count``). ``reuse=True`` fills the same arrays
        every time (faster; copy what you keep)."""
        self.start_epoch(epoch)
        out = self.new_batch(B, use_numpy) if reuse else None
        while True:
            batch = self.next(B, out=out, use_numpy=use_numpy)
            if batch.count == 0:
                return
            yield batch

    def __iter__(self):
        raise TypeError("iterate over ds.batches(B, epoch=...): a Dataset "
                        "needs a batch size")


def _check_callback_errors(datasets, err):
    """If a Python source of ``datasets`` stored an exception, raise it from
    ``err`` (an ElmError); else re-raise err. Used by the trainer."""
    for ds in datasets:
        keep = getattr(ds, "_keep", None) if ds is not None else None
        if keep is not None and keep.errors is not None:
            stored = keep.errors.take()
            if stored is not None:
                raise stored from err
    raise err
