"""NeuronIO simulation files -> libelm's memory-mappable binary layout.

The NeuronIO dataset (Beniaguev, Segev and London 2021) ships as pickles of
the simulation script of SelfishGene/neuron_as_deep_net (Python 2 protocol,
numpy arrays): ``{'Params': {...}, 'Results': {'listOfSingleSimulationDicts':
[...]}}``. ``convert`` turns one or more of them into one ``.nio`` file that
libelm maps read-only (``elm_dataset_open_neuronio``,
``elm_neuronio_evaluate``); the layout is documented byte by byte in
docs/datasets/neuronio.md and in ``write`` below.

The binning is exactly the official ELM code's (neuronio_data_utils.py,
``parse_sim_experiment_file``):

* duration D = ``Params['totalSimDurationInSec'] * 1000`` ms, 1 step = 1 ms;
  ``n_seg = len(Params['allSegmentsType'])`` (639);
* input channel ``seg`` (excitatory) or ``n_seg + seg`` (inhibitory) is on at
  step t when its spike-time list holds the integer t (the official code
  indexes a bool matrix with the times: integers, repeats collapse);
* output spike times (ms, float16) go to step ``int(float(t) - 0.5)``
  (truncation toward zero), repeats collapse;
* the soma target of step t is ``somaVoltageLowRes[t]`` (D samples), kept as
  float32 mV (the official ``torch.from_numpy(...).float()``).

Anything the official code would index out of range, silently wrap
(negative indices) or choke on is refused here with a message naming the
file, simulation and key. Pickles are read with a restricted unpickler that
only resolves the few numpy reconstruction functions such files need.

Command line (numpy needed)::

    python3 -m elm.neuronio convert OUT.nio IN.p [IN2.p ...]
    python3 -m elm.neuronio info FILE.nio
"""

import argparse
import io
import os
import pickle
import struct
import sys
import tempfile
import zlib

import numpy as np

MAGIC = b"ELM-NIO\0"
VERSION = 1
HEADER_SIZE = 64
ENTRY_SIZE = 56
HEADER = struct.Struct("<8sIIIIIIQQIIII")  # 64 bytes, see write()
ENTRY = struct.Struct("<QQQQQQII")  # 56 bytes
MAX_CHANNELS = 65535  # channels are uint16
MAX_DURATION = 1 << 30  # ms; the C reader's limit

assert HEADER.size == HEADER_SIZE and ENTRY.size == ENTRY_SIZE


class NeuronIOError(Exception):
    """Malformed input or output: the message names the file and the place."""


# (module, name) -> allowed. numpy moved its core to numpy._core in 2.0; the
# pickles name numpy.core, which numpy 2 still resolves.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, 'latin1').
    ("_codecs", "encode"),
    ("__builtin__", "bytes"),
    ("builtins", "bytes"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, name):
        super().__init__(file, encoding="latin1")
        self._name = name

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise NeuronIOError("%s: refusing the pickle global %s.%s (only numpy array "
                                "reconstruction is allowed in a NeuronIO file)"
                                % (self._name, module, name))
        return super().find_class(module, name)


def load_pickle(path):
    """The object of a NeuronIO pickle, resolving numpy arrays only."""
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, path).load()
    except NeuronIOError:
        raise
    except OSError as e:
        raise NeuronIOError("%s: cannot read: %s" % (path, e.strerror or e)) from None
    except Exception as e:  # truncated or garbage pickles raise many kinds
        raise NeuronIOError("%s: not a readable pickle: %s: %s"
                            % (path, type(e).__name__, e)) from None


def _get(d, key, where):
    if not isinstance(d, dict):
        raise NeuronIOError("%s: expected a dict, found %s" % (where, type(d).__name__))
    if key not in d:
        raise NeuronIOError("%s: missing key '%s'" % (where, key))
    return d[key]


def _integral(value, where):
    """An integer from an int, numpy integer or integral float."""
    if isinstance(value, (bool, np.bool_)):
        raise NeuronIOError("%s: expected an integer, found a bool" % where)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value):
        return int(value)
    raise NeuronIOError("%s: expected an integer, found %r" % (where, value))


def _input_times(times, D, where):
    """Spike times (ms) of one segment -> int64 bins, each in [0, D)."""
    try:
        a = np.asarray(times)
    except Exception:
        raise NeuronIOError("%s: not a list of spike times" % where) from None
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise NeuronIOError("%s: spike times must be a flat list, found shape %s"
                            % (where, a.shape))
    if a.size == 0:
        return np.zeros(0, np.int64)
    if a.dtype.kind in "iu":
        b = a.astype(np.int64)
    elif a.dtype.kind == "f":
        f = a.astype(np.float64)
        bad = ~np.isfinite(f) | (f != np.floor(f))
        if bad.any():
            raise NeuronIOError("%s: spike time %r is not a whole ms (the official code "
                                "indexes 1 ms bins with it)" % (where, f[bad][0]))
        b = f.astype(np.int64)
    else:
        raise NeuronIOError("%s: spike times of type %s" % (where, a.dtype))
    if b.min() < 0:
        raise NeuronIOError("%s: negative spike time %d ms" % (where, b.min()))
    if b.max() >= D:
        raise NeuronIOError("%s: spike time %d ms is not below the duration %d ms"
                            % (where, b.max(), D))
    return b


def _segment_events(spikes, n_seg, D, base, where):
    """dict segment -> times into (bins, channels) arrays (channel = base + seg)."""
    if not isinstance(spikes, dict):
        raise NeuronIOError("%s: expected a dict segment -> spike times, found %s"
                            % (where, type(spikes).__name__))
    bins, chans = [], []
    for key, times in spikes.items():
        seg = _integral(key, "%s: segment key" % where)
        if not 0 <= seg < n_seg:
            raise NeuronIOError("%s: segment index %d out of range [0, %d)" % (where, seg, n_seg))
        b = _input_times(times, D, "%s[%d]" % (where, seg))
        bins.append(b)
        chans.append(np.full(b.size, base + seg, np.int64))
    if not bins:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(bins), np.concatenate(chans)


def convert_simulation(sim, n_seg, D, where):
    """One simulation dict -> (time_ptr uint32 (D + 1), channels uint16 (E),
    spikes int32 (S), soma float32 (D)), exactly as the official code bins it."""
    n_in = 2 * n_seg
    eb, ec = _segment_events(_get(sim, "exInputSpikeTimes", where), n_seg, D, 0,
                             where + ".exInputSpikeTimes")
    ib, ic = _segment_events(_get(sim, "inhInputSpikeTimes", where), n_seg, D, n_seg,
                             where + ".inhInputSpikeTimes")
    # Sorted by (time, channel), repeats removed: the official bool matrix.
    keys = np.unique(np.concatenate([eb, ib]) * n_in + np.concatenate([ec, ic]))
    times, channels = keys // n_in, keys % n_in
    if keys.size >= 1 << 32:
        raise NeuronIOError("%s: %d input events exceed the format's 2^32" % (where, keys.size))
    time_ptr = np.zeros(D + 1, np.int64)
    np.cumsum(np.bincount(times, minlength=D), out=time_ptr[1:])

    out = _get(sim, "outputSpikeTimes", where)
    try:
        o = np.asarray(out, dtype=np.float64).reshape(-1)
    except Exception:
        raise NeuronIOError("%s.outputSpikeTimes: not an array of times" % where) from None
    if o.size:
        if not np.isfinite(o).all():
            raise NeuronIOError("%s.outputSpikeTimes: NaN or Inf spike time" % where)
        if o.min() < 0:
            raise NeuronIOError("%s.outputSpikeTimes: negative spike time %g ms" % (where, o.min()))
    # The official (t.astype(float) - 0.5).astype(int): truncation toward zero.
    spikes = np.unique(np.trunc(o - 0.5).astype(np.int64))
    if spikes.size and spikes[-1] >= D:
        raise NeuronIOError("%s.outputSpikeTimes: spike at %g ms falls in bin %d, not below "
                            "the duration %d ms" % (where, o.max(), spikes[-1], D))

    soma = _get(sim, "somaVoltageLowRes", where)
    try:
        v = np.asarray(soma)
    except Exception:
        raise NeuronIOError("%s.somaVoltageLowRes: not an array" % where) from None
    if v.dtype.kind not in "fiu":
        raise NeuronIOError("%s.somaVoltageLowRes: values of type %s" % (where, v.dtype))
    if v.ndim != 1 or v.shape[0] != D:
        raise NeuronIOError("%s.somaVoltageLowRes: expected %d samples (1 per ms), found "
                            "shape %s" % (where, D, v.shape))
    # float64 first as the official y_soma array, then float32 as .float().
    v = v.astype(np.float64).astype(np.float32)
    if not np.isfinite(v).all():
        raise NeuronIOError("%s.somaVoltageLowRes: NaN or Inf at sample %d"
                            % (where, int(np.flatnonzero(~np.isfinite(v))[0])))
    return (time_ptr.astype(np.uint32), channels.astype(np.uint16),
            spikes.astype(np.int32), v)


def read_params(obj, path):
    """(n_seg, D, simulation list) of a loaded NeuronIO pickle."""
    params = _get(obj, "Params", path)
    results = _get(obj, "Results", path)
    sims = _get(results, "listOfSingleSimulationDicts", path + ": Results")
    if not isinstance(sims, (list, tuple)):
        raise NeuronIOError("%s: Results.listOfSingleSimulationDicts is not a list" % path)
    segs = _get(params, "allSegmentsType", path + ": Params")
    try:
        n_seg = len(segs)
    except TypeError:
        raise NeuronIOError("%s: Params.allSegmentsType is not a list" % path) from None
    if not 1 <= 2 * n_seg <= MAX_CHANNELS:
        raise NeuronIOError("%s: %d segments (need 1 to %d)" % (path, n_seg, MAX_CHANNELS // 2))
    sec = _get(params, "totalSimDurationInSec", path + ": Params")
    if isinstance(sec, (bool, np.bool_)) or not isinstance(sec, (int, float, np.integer, np.floating)):
        raise NeuronIOError("%s: Params.totalSimDurationInSec is not a number" % path)
    D = _integral(sec * 1000, path + ": Params.totalSimDurationInSec * 1000")
    if not 1 <= D <= MAX_DURATION:
        raise NeuronIOError("%s: duration %d ms out of range [1, %d]" % (path, D, MAX_DURATION))
    return n_seg, D, sims


def _pad8(n):
    return (8 - n % 8) % 8


class _Writer:
    """Sequential writer that keeps the offset and the CRC-32 of the body."""

    def __init__(self, fh):
        self.fh, self.pos, self.crc = fh, HEADER_SIZE, 0

    def put(self, data):
        data = bytes(data)
        self.fh.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.pos += len(data)

    def array(self, a, dtype):
        off = self.pos
        self.put(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())
        self.put(b"\0" * _pad8(self.pos))
        return off


def convert(out_path, in_paths, log=None):
    """Writes the simulations of the pickles in_paths (in order) to out_path
    atomically. Returns the number of simulations written."""
    if not in_paths:
        raise NeuronIOError("convert: no input files")
    out_dir = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(out_path), suffix=".tmp",
                               dir=out_dir)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)  # mkstemp's 0600 is for the temporary only
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\0" * HEADER_SIZE)  # rewritten once the body is known
            w = _Writer(fh)
            entries = []
            n_seg = D = None
            for fi, path in enumerate(in_paths):
                obj = load_pickle(path)
                ns, d, sims = read_params(obj, path)
                if n_seg is None:
                    n_seg, D = ns, d
                elif (ns, d) != (n_seg, D):
                    raise NeuronIOError("%s: %d segments and %d ms differ from %s's %d and %d"
                                        % (path, ns, d, in_paths[0], n_seg, D))
                for si, sim in enumerate(sims):
                    where = "%s: simulation %d" % (path, si)
                    tp, ch, sp, soma = convert_simulation(sim, n_seg, D, where)
                    o_tp = w.array(tp, "u4")
                    o_ch = w.array(ch, "u2")
                    o_sp = w.array(sp, "i4")
                    o_so = w.array(soma, "f4")
                    entries.append((o_tp, o_ch, ch.size, o_sp, sp.size, o_so, fi, si))
                if log:
                    log("%s: %d simulations" % (path, len(sims)))
                del obj, sims
            if not entries:
                raise NeuronIOError("%s: no simulations in %s" % (out_path, ", ".join(in_paths)))
            if len(entries) >= 1 << 32:
                raise NeuronIOError("%s: too many simulations" % out_path)
            table_offset = w.pos
            for e in entries:
                w.put(ENTRY.pack(*e))
            file_size = w.pos
            head = HEADER.pack(MAGIC, VERSION, HEADER_SIZE, n_seg, 2 * n_seg, D, len(entries),
                               file_size, table_offset, ENTRY_SIZE, w.crc, 0, 0)
            head = head[:60] + struct.pack("<I", zlib.crc32(head[:60]))
            fh.seek(0)
            fh.write(head)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(out_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return len(entries)


class NioFile:
    """A converted file read back with numpy (validated as the C reader does),
    for tests and inspection."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as fh:
            self.data = fh.read()
        self._validate()

    def _fail(self, msg):
        raise NeuronIOError("%s: %s" % (self.path, msg))

    def _validate(self):
        b = self.data
        if len(b) < HEADER_SIZE:
            self._fail("truncated: %d bytes, the header alone has %d" % (len(b), HEADER_SIZE))
        (magic, version, hsize, n_seg, n_in, D, n_sim, size, table, esize, crc, flags,
         hcrc) = HEADER.unpack_from(b)
        if magic != MAGIC:
            self._fail("not a NeuronIO file (bad magic)")
        if version != VERSION:
            self._fail("format version %d (this reader knows %d)" % (version, VERSION))
        if zlib.crc32(b[:60]) != hcrc:
            self._fail("header checksum mismatch")
        if size > len(b):
            self._fail("truncated: %d bytes of %d" % (len(b), size))
        if size != len(b):
            self._fail("%d bytes after the declared end" % (len(b) - size))
        if zlib.crc32(b[HEADER_SIZE:]) != crc:
            self._fail("checksum mismatch: the data is damaged")
        if hsize != HEADER_SIZE or esize != ENTRY_SIZE or n_in != 2 * n_seg or flags:
            self._fail("inconsistent header")
        self.n_seg, self.n_in, self.duration, self.n_sim = n_seg, n_in, D, n_sim
        if table + n_sim * ENTRY_SIZE != size:
            self._fail("table does not end the file")
        self.entries = [ENTRY.unpack_from(b, table + i * ENTRY_SIZE) for i in range(n_sim)]
        pos = HEADER_SIZE
        self.sims = []
        for i, (o_tp, o_ch, E, o_sp, S, o_so, fi, si) in enumerate(self.entries):
            arrays = []
            for off, dt, n in ((o_tp, "<u4", D + 1), (o_ch, "<u2", E), (o_sp, "<i4", S),
                               (o_so, "<f4", D)):
                if off != pos:
                    self._fail("simulation %d: array at offset %d, expected %d" % (i, off, pos))
                nbytes = n * np.dtype(dt).itemsize
                if off + nbytes > table:
                    self._fail("simulation %d: array runs past the table" % i)
                arrays.append(np.frombuffer(b, dt, n, off))
                pos = off + nbytes + _pad8(nbytes)
            tp, ch, sp, so = arrays
            if tp[0] != 0 or tp[-1] != E or (np.diff(tp.astype(np.int64)) < 0).any():
                self._fail("simulation %d: bad time index" % i)
            if E and ch.max() >= n_in:
                self._fail("simulation %d: channel %d out of range" % (i, ch.max()))
            if S and (sp.min() < 0 or sp.max() >= D or (np.diff(sp) <= 0).any()):
                self._fail("simulation %d: bad output spike bins" % i)
            self.sims.append((tp, ch, sp, so))
        if pos != table:
            self._fail("data does not end at the table")

    def source(self, s):
        """(input file index, simulation index in that file) of simulation s."""
        return self.entries[s][6], self.entries[s][7]

    def window(self, s, t0, length):
        """x (length, n_in) float32 +1/-1/0, spike (length), soma (length) mV."""
        tp, ch, sp, so = self.sims[s]
        x = np.zeros((length, self.n_in), np.float32)
        for t in range(t0, t0 + length):
            c = ch[tp[t]:tp[t + 1]].astype(np.int64)
            x[t - t0, c] = np.where(c < self.n_seg, 1.0, -1.0)
        spike = np.zeros(length, np.float32)
        sel = sp[(sp >= t0) & (sp < t0 + length)]
        spike[sel - t0] = 1.0
        return x, spike, so[t0:t0 + length].copy()


def soma_target(v_mv):
    """The official training target: (min(v, -55) - (-67.7)) * 0.1 in float32."""
    v = np.asarray(v_mv, np.float32).copy()
    v[v > np.float32(-55.0)] = np.float32(-55.0)
    return (v - np.float32(-67.7)) * np.float32(0.1)


def info(path, out=sys.stdout):
    f = NioFile(path)
    print("%s: NeuronIO layout v%d, %d simulations of %d ms, %d inputs (%d exc + %d inh)"
          % (path, VERSION, f.n_sim, f.duration, f.n_in, f.n_seg, f.n_seg), file=out)
    for s in range(f.n_sim):
        tp, ch, sp, so = f.sims[s]
        fi, si = f.source(s)
        print("  %4d  file %d sim %3d  %8d input events  %3d output spikes  soma %.2f..%.2f mV"
              % (s, fi, si, ch.size, sp.size, so.min(), so.max()), file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m elm.neuronio", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="pickles -> one .nio file")
    c.add_argument("out")
    c.add_argument("inputs", nargs="+")
    i = sub.add_parser("info", help="summary of a .nio file (validating it)")
    i.add_argument("file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "convert":
            n = convert(args.out, args.inputs, log=lambda m: print(m, file=sys.stderr))
            print("%s: %d simulations" % (args.out, n))
        else:
            info(args.file)
    except NeuronIOError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
