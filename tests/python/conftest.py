"""Shared fixtures of the Python tests: the package on sys.path, the shared
reference data (env ELM_SHARED, default ../shared beside the project) and
the C library through plain ctypes (env ELM_LIBRARY, the path of
libelm.so). Tests that need what is absent are skipped with the reason."""

import ctypes
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
_BINDINGS = ROOT / "bindings" / "python"
if str(_BINDINGS) not in sys.path:  # run without PYTHONPATH: use this tree
    sys.path.insert(0, str(_BINDINGS))


def shared_path():
    return pathlib.Path(os.environ.get("ELM_SHARED") or ROOT.parent / "shared")


def _present(path, what):
    if not path.is_dir():
        pytest.skip("%s not found at %s (set ELM_SHARED)" % (what, path))
    return path


@pytest.fixture(scope="session")
def shared():
    path = shared_path()
    _present(path / "reference", "shared reference data")
    return path


@pytest.fixture(scope="session")
def official_dir(shared):
    return _present(shared / "reference" / "elmneuron-models", "official models")


@pytest.fixture(scope="session")
def fixtures_dir(shared):
    return _present(shared / "reference" / "fixtures", "reference fixtures")


class CError(Exception):
    def __init__(self, fn, code, message):
        super().__init__("%s failed (%d): %s" % (fn, code, message))
        self.code = code
        self.message = message


# elm_size keys (elm.h)
SIZE_INPUT, SIZE_OUTPUT, SIZE_MEMORY, SIZE_SYNAPSE, SIZE_PARAMS, SIZE_TRAINABLE = 1, 2, 3, 5, 7, 8


class CLib:
    """The few libelm calls the tests need, over ctypes."""

    def __init__(self, lib):
        self.lib = lib
        vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        lib.elm_last_error.restype = cp
        lib.elm_last_error.argtypes = []
        lib.elm_model_load.argtypes = [cp, ctypes.POINTER(vp)]
        lib.elm_model_free.argtypes = [vp]
        lib.elm_model_free.restype = None
        lib.elm_model_forward.argtypes = [vp, ctypes.POINTER(ctypes.c_float), sz, sz,
                                          ctypes.POINTER(ctypes.c_float)]
        lib.elm_model_get_param.argtypes = [vp, cp, ctypes.POINTER(ctypes.c_float), sz]
        lib.elm_model_size.argtypes = [vp, ctypes.c_int, ctypes.POINTER(sz)]
        self.has_save = hasattr(lib, "elm_model_save")
        if self.has_save:
            lib.elm_model_save.argtypes = [vp, cp]

    def _check(self, fn, rc):
        if rc != 0:
            raise CError(fn, rc, self.lib.elm_last_error().decode("utf-8", "replace"))

    def load(self, path):
        handle = ctypes.c_void_p()
        self._check("elm_model_load",
                    self.lib.elm_model_load(os.fsencode(path), ctypes.byref(handle)))
        return CModel(self, handle)


class CModel:
    def __init__(self, clib, handle):
        self.clib, self.handle = clib, handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def free(self):
        if self.handle:
            self.clib.lib.elm_model_free(self.handle)
            self.handle = None

    def size(self, what):
        v = ctypes.c_size_t()
        self.clib._check("elm_model_size",
                         self.clib.lib.elm_model_size(self.handle, what, ctypes.byref(v)))
        return v.value

    def param(self, name, numel):
        np = pytest.importorskip("numpy")
        out = np.empty(numel, dtype=np.float32)
        self.clib._check("elm_model_get_param", self.clib.lib.elm_model_get_param(
            self.handle, name.encode(), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            numel))
        return out

    def forward(self, x):
        np = pytest.importorskip("numpy")
        x = np.ascontiguousarray(x, dtype=np.float32)
        B, T, _ = x.shape
        y = np.empty((B, T, self.size(SIZE_OUTPUT)), dtype=np.float32)
        fp = ctypes.POINTER(ctypes.c_float)
        self.clib._check("elm_model_forward", self.clib.lib.elm_model_forward(
            self.handle, x.ctypes.data_as(fp), B, T, y.ctypes.data_as(fp)))
        return y

    def save(self, path):
        if not self.clib.has_save:
            pytest.skip("this libelm has no elm_model_save")
        self.clib._check("elm_model_save",
                         self.clib.lib.elm_model_save(self.handle, os.fsencode(path)))


@pytest.fixture(scope="session")
def libelm():
    path = os.environ.get("ELM_LIBRARY")
    if not path:
        pytest.skip("ELM_LIBRARY is not set (path of libelm.so): C-side checks skipped")
    if not os.path.exists(path):
        pytest.skip("ELM_LIBRARY=%s does not exist" % path)
    lib = ctypes.CDLL(path)
    if not hasattr(lib, "elm_model_load"):
        pytest.skip("%s has no elm_model_load" % path)
    return CLib(lib)
