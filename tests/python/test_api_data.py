"""elm.data.Dataset against the C iterator (elm.h section 9): arrays and
event lists against hand-computed batches, Python sources (random access
and streaming, with prefetch) against from_arrays over the same data,
exceptions raised inside Python sources, splits, lifetimes, the IDX reader
on Fashion-MNIST (when installed) and the ListOps generator."""

import array
import gc
import gzip
import pathlib
import threading
import weakref

import pytest

np = pytest.importorskip("numpy")

from elm import _capi  # noqa: E402
from elm._capi import ElmError  # noqa: E402
from elm.data import Batch, Dataset  # noqa: E402

FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module", autouse=True)
def lib():
    try:
        return _capi.lib()
    except _capi.LibraryNotFound as exc:
        pytest.skip("libelm not found: %s" % exc)


def arrays(N=7, T=5, n_in=3, n_target=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, n_in)).astype(np.float32)
    target = rng.standard_normal((N, T, n_target)).astype(np.float32)
    labels = rng.integers(0, 10, (N, 1)).astype(np.int32)
    lengths = rng.integers(1, T + 1, N).astype(np.int64)
    return x, target, labels, lengths


def all_batches(ds, B, epoch=0):
    return [tuple(None if a is None else np.array(a, copy=True) for a in b[:4]) + (b.count,)
            for b in ds.batches(B, epoch=epoch)]


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert a[4] == b[4]
        for u, v in zip(a[:4], b[:4]):
            if u is None or v is None:
                assert u is None and v is None
            else:
                np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------------------
# arrays and events


def test_from_arrays_in_order_equals_slices():
    x, target, labels, lengths = arrays()
    with Dataset.from_arrays(x, target, labels, lengths) as ds:
        assert (ds.N, ds.T, ds.n_in, ds.n_target, ds.n_label) == (7, 5, 3, 2, 1)
        assert len(ds) == 7 and ds.num_batches(3) == 3
        ds.shuffle = False
        got = list(ds.batches(3))
        assert [b.count for b in got] == [3, 3, 1]
        for k, b in enumerate(got):
            assert isinstance(b, Batch)
            sl = slice(3 * k, min(3 * k + 3, 7))
            n = b.count
            np.testing.assert_array_equal(b.x[:n], x[sl])
            np.testing.assert_array_equal(b.target[:n], target[sl])
            np.testing.assert_array_equal(b.labels[:n], labels[sl])
            np.testing.assert_array_equal(b.lengths[:n], lengths[sl])
            # padding: zero samples of length 0
            assert not b.x[n:].any() and not b.target[n:].any()
            assert not b.labels[n:].any() and not b.lengths[n:].any()
        end = ds.next(3)
        assert end.count == 0 and not end.x.any()


def test_drop_last_and_options():
    x, _, labels, _ = arrays()
    ds = Dataset.from_arrays(x, labels=labels[:, 0])
    assert ds.n_label == 1 and ds.n_target == 0
    assert (ds.shuffle, ds.seed, ds.drop_last, ds.prefetch) == (True, 0, False, False)
    ds.set(shuffle=False, drop_last=True)
    assert (ds.shuffle, ds.drop_last) == (False, True)  # read back from libelm
    assert [b.count for b in ds.batches(3)] == [3, 3]
    assert ds.num_batches(3) == 2
    with pytest.raises(ElmError) as e:
        ds.seed = 2 ** 60
    assert e.value.code == _capi.Status.E_INVALID
    assert ds.seed == 0
    with pytest.raises(TypeError):
        ds.set(shufle=True)
    ds.close()
    assert ds.closed
    with pytest.raises(_capi.ClosedError):
        ds.next(2)
    ds.close()  # idempotent


def test_shuffle_is_a_permutation_of_seed_and_epoch():
    N = 11
    x = np.arange(N, dtype=np.float32).reshape(N, 1, 1)
    ds = Dataset.from_arrays(x)
    ds.seed = 5

    def order(epoch):
        return [int(v) for b in ds.batches(4, epoch=epoch) for v in b.x[:b.count, 0, 0]]

    e0, e1 = order(0), order(1)
    assert sorted(e0) == list(range(N)) and sorted(e1) == list(range(N))
    assert e0 != e1 and order(0) == e0
    ds.seed = 6
    assert order(0) != e0


def test_from_arrays_borrows_without_copy_and_keeps_arrays_alive():
    x, _, labels, _ = arrays()
    ds = Dataset.from_arrays(x, labels=labels)
    ds.shuffle = False
    ref = weakref.ref(x)
    del x
    gc.collect()
    assert ref() is not None  # the dataset keeps the borrowed array
    ref()[0, 0, 0] = 42.0     # zero-copy: the change shows in the batch
    assert ds.next(2).x[0, 0, 0] == 42.0
    ds.close()
    gc.collect()
    assert ref() is None


def test_converted_inputs_and_flat_buffers():
    x, target, labels, lengths = arrays()
    ds = Dataset.from_arrays(x.astype(np.float64).tolist(), target, labels.tolist(),
                             lengths.tolist())
    ds.shuffle = False
    b = ds.next(7)
    np.testing.assert_array_equal(b.x, x)
    flat = ds.next(7, use_numpy=False)  # end of epoch, flat array.array
    assert isinstance(flat.x, array.array) and len(flat.x) == 7 * 5 * 3
    ds.start_epoch(0)
    flat = ds.next(7, use_numpy=False)
    assert flat.count == 7 and list(flat.lengths) == lengths.tolist()
    assert list(flat.x) == x.ravel().tolist()


def test_next_into_reused_batch():
    x, _, labels, _ = arrays()
    ds = Dataset.from_arrays(x, labels=labels)
    ds.shuffle = False
    out = ds.new_batch(4)
    b = ds.next(4, out=out)
    assert b.x is out.x and b.count == 4
    with pytest.raises(ValueError):
        ds.next(3, out=out)  # shapes must match


def test_from_events_bins_counts():
    # sample 0: 3 events, sample 1: none, sample 2: 2 events
    offsets = np.array([0, 3, 3, 5], np.int64)
    times = np.array([0.0, 1.9, 2.0, 4.99, 7.5], np.float32)
    channels = np.array([1, 1, 0, 2, 0], np.int32)
    labels = np.array([4, 5, 6], np.int32)
    ds = Dataset.from_events(offsets, times, channels, n_in=3, dt_ms=2.0, duration_ms=7.0,
                             labels=labels)
    assert (ds.N, ds.T, ds.n_in, ds.n_label) == (3, 4, 3, 1)
    ds.shuffle = False
    b = ds.next(3)
    want = np.zeros((3, 4, 3), np.float32)
    want[0, 0, 1] = 2   # 0.0 and 1.9 in [0, 2)
    want[0, 1, 0] = 1   # 2.0 in [2, 4)
    want[2, 2, 2] = 1   # 4.99 in [4, 6); 7.5 >= 7 is cut
    np.testing.assert_array_equal(b.x, want)
    np.testing.assert_array_equal(b.labels[:, 0], labels)
    with pytest.raises(ElmError) as e:
        Dataset.from_events(offsets, times, np.array([1, 1, 0, 3, 0], np.int32), 3, 2.0, 7.0)
    assert e.value.code == _capi.Status.E_INVALID


# ---------------------------------------------------------------------------
# Python sources


class RandomAccess:
    """Serves the rows of arrays() by index, recording the threads it ran on."""

    def __init__(self, x, target, labels, lengths):
        self.x, self.target, self.labels, self.lengths = x, target, labels, lengths
        self.T, self.n_in = x.shape[1:]
        self.n_target, self.n_label = target.shape[2], labels.shape[1]
        self.threads = set()
        self.fail_at = None

    def __len__(self):
        return len(self.x)

    def read(self, epoch, i, x, target, labels):
        self.threads.add(threading.get_ident())
        if i == self.fail_at:
            raise ZeroDivisionError("sample %d" % i)
        assert not x.any()  # buffers arrive zero-filled
        x[:] = self.x[i]
        target[:] = self.target[i]
        labels[:] = self.labels[i]
        return int(self.lengths[i])


class Streaming:
    def __init__(self, x, target, labels, lengths, sized=False):
        self.data = (x, target, labels, lengths)
        self.T, self.n_in = x.shape[1:]
        self.n_target, self.n_label = target.shape[2], labels.shape[1]
        self.pos = 0
        self.resets = []
        self.fail_at = None
        if sized:
            self.__len__ = lambda: len(x)

    def reset(self, epoch):
        self.resets.append(epoch)
        self.pos = 0

    def next(self, x, target, labels):
        X, TG, L, N = self.data
        if self.pos == len(X):
            return None
        if self.pos == self.fail_at:
            self.fail_at = None
            raise KeyError("stream %d" % self.pos)
        i = self.pos
        x[:], target[:], labels[:] = X[i], TG[i], L[i]
        self.pos += 1
        return int(N[i])


@pytest.mark.parametrize("prefetch", [False, True])
def test_python_random_access_equals_arrays(prefetch):
    data = arrays(N=23, T=6)
    ref = Dataset.from_arrays(*data)
    src = RandomAccess(*data)
    ds = Dataset.from_python(src)
    assert (ds.N, ds.T, ds.n_in, ds.n_target, ds.n_label) == (23, 6, 3, 2, 1)
    for d in (ref, ds):
        d.set(seed=9, prefetch=prefetch)
    for epoch in range(3):
        assert_same(all_batches(ref, 4, epoch), all_batches(ds, 4, epoch))
    if prefetch:  # the worker thread ran some callbacks (with the GIL)
        assert len(src.threads) == 2
    else:
        assert src.threads == {threading.get_ident()}
    ds.close()
    ref.close()


def test_python_streaming_equals_arrays_in_order():
    data = arrays(N=10, T=4)
    ref = Dataset.from_arrays(*data)
    ref.shuffle = False
    src = Streaming(*data)
    ds = Dataset.from_python(src)
    assert ds.N == 0 and ds.num_batches(3) is None
    ds.prefetch = True  # streaming sources ignore it: same batches
    for epoch in (0, 1):
        assert_same(all_batches(ref, 3), all_batches(ds, 3, epoch))
    assert src.resets == [0, 1]
    assert Dataset.from_python(Streaming(*data, sized=True), N=10).N == 10


def test_python_source_shapes_from_keywords():
    class Ones:
        def __len__(self):
            return 3

        def read(self, epoch, i, x, target, labels):
            x[:] = i + 1
            assert target is None and labels is None

    ds = Dataset.from_python(Ones(), T=2, n_in=4)
    ds.shuffle = False
    b = ds.next(3)
    assert b.target is None and b.labels is None
    np.testing.assert_array_equal(b.x[:, 0, 0], [1, 2, 3])
    np.testing.assert_array_equal(b.lengths, [2, 2, 2])  # None -> T
    with pytest.raises(TypeError):
        Dataset.from_python(Ones(), T=2)  # no n_in
    with pytest.raises(TypeError):
        Dataset.from_python(object(), T=2, n_in=1)


@pytest.mark.parametrize("prefetch", [False, True])
def test_exception_in_random_access_source_surfaces(prefetch):
    data = arrays(N=9)
    src = RandomAccess(*data)
    ds = Dataset.from_python(src)
    ds.set(shuffle=False, prefetch=prefetch)
    src.fail_at = 5
    ds.start_epoch(0)
    assert ds.next(4).count == 4
    with pytest.raises(ZeroDivisionError, match="sample 5") as e:
        ds.next(4)
    assert isinstance(e.value.__cause__, ElmError)
    # nothing consumed: the retry gives the batch
    src.fail_at = None
    b = ds.next(4)
    assert b.count == 4
    np.testing.assert_array_equal(b.x, data[0][4:8])


def test_exception_in_streaming_source_and_reset():
    data = arrays(N=6)
    src = Streaming(*data)
    ds = Dataset.from_python(src)
    src.fail_at = 4
    assert ds.next(3).count == 3
    with pytest.raises(KeyError, match="stream 4"):
        ds.next(3)
    b = ds.next(3)  # samples delivered before the failure were kept
    assert b.count == 3
    np.testing.assert_array_equal(b.x, data[0][3:6])

    def bad_reset(epoch):
        raise RuntimeError("no epoch %d" % epoch)
    src.reset = bad_reset
    with pytest.raises(RuntimeError, match="no epoch 2"):
        ds.start_epoch(2)


def test_bad_length_from_source_is_a_python_error():
    class Bad:
        T, n_in = 3, 1

        def __len__(self):
            return 2

        def read(self, epoch, i, x, target, labels):
            return 7

    ds = Dataset.from_python(Bad())
    with pytest.raises(ValueError, match=r"length 7, outside \[1, T = 3\]"):
        ds.next(2)


def test_split_of_python_source_and_shared_lifetime():
    data = arrays(N=12)
    src = RandomAccess(*data)
    ds = Dataset.from_python(src)
    train, val = ds.split(4, seed=3)
    assert (len(train), len(val)) == (8, 4)
    ref = Dataset.from_arrays(*data)
    rtrain, rval = ref.split(4, seed=3)
    ds.close()  # the halves keep the source
    del src
    for a, b in ((train, rtrain), (val, rval)):
        a.shuffle = b.shuffle = False
        assert_same(all_batches(a, 5), all_batches(b, 5))
    seen = [float(v) for d in (train, val) for b in d.batches(12)
            for v in b.x[:b.count, 0, 0]]
    assert sorted(seen) == sorted(data[0][:, 0, 0].tolist())
    with pytest.raises(ElmError) as e:
        Dataset.from_python(Streaming(*data)).split(2)
    assert e.value.code == _capi.Status.E_UNSUPPORTED


def test_no_cycles_keep_sources_alive():
    data = arrays(N=5)
    gc.collect()
    gc.disable()  # only reference counting may free them
    try:
        src = RandomAccess(*data)
        probe = weakref.ref(src)
        ds = Dataset.from_python(src)
        ds.prefetch = True
        ds.next(2)
        train, val = ds.split(2)
        dref, tref = weakref.ref(ds), weakref.ref(train)
        del src, ds
        assert probe() is not None and dref() is None  # freed, halves keep the source
        train.next(2)
        del train
        assert tref() is None and probe() is not None
        val.close()
        del val
        assert probe() is None
    finally:
        gc.enable()


# ---------------------------------------------------------------------------
# files and generators


def test_missing_files_raise_io_errors(tmp_path):
    for open_ in (lambda p: Dataset.open_idx(p, p), lambda p: Dataset.open_listops(p),
                  lambda p: Dataset.open_neuronio(p, 500, 10)):
        with pytest.raises(ElmError) as e:
            open_(tmp_path / "absent")
        assert e.value.code == _capi.Status.E_IO and "absent" in e.value.message


def _idx_labels(path):
    raw = gzip.open(path).read()
    return np.frombuffer(raw[8:], np.uint8)


def _idx_images(path, n):
    raw = gzip.open(path).read()
    return np.frombuffer(raw[16:16 + n * 784], np.uint8).reshape(n, 28, 28)


@pytest.mark.skipif(not FASHION.is_dir(), reason="no %s" % FASHION)
def test_fashion_mnist_idx():
    images, labels = FASHION / "t10k-images-idx3-ubyte.gz", FASHION / "t10k-labels-idx1-ubyte.gz"
    want_labels = _idx_labels(labels)
    want_images = _idx_images(images, 8)
    with Dataset.open_idx(images, labels, "rows") as ds:
        assert (ds.N, ds.T, ds.n_in, ds.n_label) == (10000, 28, 28, 1)
        ds.shuffle = False
        b = ds.next(8)
        np.testing.assert_array_equal(b.labels[:, 0], want_labels[:8])
        np.testing.assert_allclose(b.x, want_images / np.float32(255), rtol=1e-6)
    with Dataset.open_idx(images, labels, "pixels") as ds:
        assert (ds.T, ds.n_in) == (784, 1)
        ds.shuffle = False
        b = ds.next(8)
        np.testing.assert_allclose(b.x[..., 0], want_images.reshape(8, 784) / np.float32(255),
                                   rtol=1e-6)
    with Dataset.open_idx(images, labels, "pixels", permute=True, permute_seed=4) as ds:
        ds.shuffle = False
        p = ds.next(8).x[..., 0]
        flat = want_images.reshape(8, 784) / np.float32(255)
        assert not np.array_equal(p, flat)
        np.testing.assert_allclose(np.sort(p, axis=1), np.sort(flat, axis=1), rtol=1e-6)
    with pytest.raises(ValueError):
        Dataset.open_idx(images, labels, "columns")


def test_listops_generator():
    ds = Dataset.generate_listops(20, seed=1, min_length=10, max_length=60)
    assert (ds.N, ds.T, ds.n_in, ds.n_label) == (20, 60, 15, 1)
    ds.shuffle = False
    b = ds.next(20)
    assert ((b.lengths >= 10) & (b.lengths <= 60)).all()
    assert ((b.labels >= 0) & (b.labels < 10)).all()
    for x, n in zip(b.x, b.lengths):
        assert (x[:n].sum(axis=1) == 1).all() and not x[n:].any()  # one-hot, then zeros
    again = Dataset.generate_listops(20, seed=1, min_length=10, max_length=60)
    again.shuffle = False
    np.testing.assert_array_equal(again.next(20).x, b.x)
    other = Dataset.generate_listops(20, seed=2, min_length=10, max_length=60)
    other.shuffle = False
    assert not np.array_equal(other.next(20).x, b.x)


def test_listops_tsv_roundtrip(tmp_path):
    tsv = tmp_path / "listops.tsv"
    tsv.write_text("Source\tTarget\n( ( [MAX 2 9 ) ( [MIN 4 7 ] ) 0 ] )\t9\n[SM 3 4 ]\t7\n")
    ds = Dataset.open_listops(tsv)
    assert (ds.N, ds.n_in) == (2, 15)
    ds.shuffle = False
    b = ds.next(2)
    np.testing.assert_array_equal(b.labels[:, 0], [9, 7])
    tokens = [int(np.argmax(v)) for v in b.x[1, :b.lengths[1]]]
    assert tokens == [13, 3, 4, 14]
    bad = tmp_path / "bad.tsv"
    bad.write_text("Source\tTarget\n[SM 3 4 ]\t8\n")
    with pytest.raises(ElmError) as e:
        Dataset.open_listops(bad)
    assert "bad.tsv" in e.value.message
