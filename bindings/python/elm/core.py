"""The core objects of libelm: Config, Model and State (elm.h sections 3-5
and 11).

Arrays: inputs are numpy arrays (float32, C-contiguous: zero-copy; other
array-likes are converted, see :mod:`elm._buffers`) or, without numpy, any
buffer of the right format (``array.array('f')`` ...). Results are numpy
arrays when numpy is installed, else flat row-major ``array.array``.

Lifetime: every object owns one C handle, freed by ``close()``, by leaving
its ``with`` block, or, failing both, when it is garbage collected. Using a
closed object raises :class:`ClosedError` (a ValueError). A State keeps its
Model alive; closing a Model first closes every object made from it (its
states, and the training objects of elm.training), so no C object ever
outlives the model it points into.
"""

import ctypes
import os
import threading
import weakref

from . import _buffers as _b
from . import _capi
from ._capi import (ClosedError, ElmError, Formulation, Activation, Routing,
                    Param, Size, check, cstr, lib, path_arg)

__all__ = ["Config", "Model", "State", "ParamInfo", "ElmError", "ClosedError",
           "gemm_info", "version"]


def version():
    """(major, minor, patch) of the loaded libelm."""
    return _capi.version()


def gemm_info():
    """The matrix-product backend libelm uses (a string)."""
    return _capi.gemm_info()


# ---------------------------------------------------------------------------
# Handle ownership


class Handle:
    """Base of every object owning a C handle.

    Subclasses set ``_free_fn`` (the C free function's name) and call
    ``_own(ptr, parent)``. ``parent`` (a Handle or None) is kept alive as
    long as this object is open, and closing the parent closes this object
    first. ``close()`` is idempotent: the handle is freed exactly once.
    """

    _free_fn = None
    _ptr = None
    _parent = None
    _children = None

    def _own(self, ptr, parent=None):
        self._ptr = ptr
        self._parent = parent
        # By identity: a child's __eq__/__hash__ (Config compares by value)
        # must not matter here.
        self._children = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        if parent is not None:
            parent._adopt(self)

    def _adopt(self, child):
        """Register ``child`` to be closed before this object is."""
        self._handle()  # refuse children of a closed object
        self._children[id(child)] = child

    @property
    def _h(self):
        return self._handle()

    def _handle(self):
        ptr = self._ptr
        if not ptr:
            raise ClosedError("%s is closed" % type(self).__name__)
        return ptr

    @property
    def closed(self):
        return not self._ptr

    def close(self):
        """Free the C object (and, first, every object made from it).
        Safe to call more than once."""
        if not self._ptr:
            return
        for child in list(self._children.values() if self._children else ()):
            child.close()
        with self._lock:  # two threads closing at once free it only once
            ptr, self._ptr = self._ptr, None
        if not ptr:
            return
        getattr(lib(), self._free_fn)(ptr)
        parent, self._parent = self._parent, None
        if parent is not None and parent._children is not None:
            parent._children.pop(id(self), None)

    def __enter__(self):
        self._handle()
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Children hold strong references to their parent, so a parent is
        # collected after its children; at interpreter shutdown the module
        # globals may be gone: never raise from here.
        try:
            if self._ptr:
                self.close()
        except Exception:
            pass


def _out_handle():
    return ctypes.c_void_p()


# ---------------------------------------------------------------------------
# Config

# Keys whose values are integers, enums or booleans (the rest are floats).
_INT_KEYS = {Param.NUM_INPUT, Param.NUM_OUTPUT, Param.NUM_MEMORY,
             Param.MLP_NUM_LAYERS, Param.MLP_HIDDEN_SIZE, Param.NUM_BRANCH,
             Param.SYNAPSES_PER_BRANCH}
_ENUM_KEYS = {Param.FORMULATION: Formulation, Param.MLP_ACTIVATION: Activation,
              Param.ROUTING: Routing}
_BOOL_KEYS = {Param.LEARN_TAU_M}

# Python-side short names (the enum member names in lower case) besides the
# C/YAML names ("num_memory") and the reference's ("lambda_value").
_ENUM_NAMES = {
    Param.FORMULATION: {"v1": Formulation.V1, "v2": Formulation.V2},
    Param.MLP_ACTIVATION: {"relu": Activation.RELU, "silu": Activation.SILU},
    Param.ROUTING: {"none": Routing.NONE, "random": Routing.RANDOM,
                    "neuronio": Routing.NEURONIO},
}


def param_key(name):
    """elm_param for a key given as Param, int, or name (the YAML name
    "num_memory", a reference alias "tau_b_value", or the Param member name
    in any case, "NUM_MEMORY"/"lambda"). KeyError when unknown."""
    if isinstance(name, Param):
        return name
    if isinstance(name, int) and not isinstance(name, bool):
        try:
            return Param(name)
        except ValueError:
            raise KeyError("no hyper-parameter with key %d" % name) from None
    if not isinstance(name, str):
        raise TypeError("a hyper-parameter key is a name or Param, not %s" %
                        type(name).__name__)
    key = ctypes.c_int()
    if lib().elm_param_from_name(name.encode(), ctypes.byref(key)) == 0:
        return Param(key.value)
    try:
        return Param[name.upper()]
    except KeyError:
        pass
    raise KeyError("unknown hyper-parameter %r (known: %s)" % (
        name, ", ".join(param_name(p) for p in Param)))


def param_name(key):
    """The YAML name of a key ("num_memory")."""
    raw = lib().elm_param_name(int(key))
    if raw is None:
        raise KeyError("no hyper-parameter with key %r" % (key,))
    return raw.decode()


def _encode_value(key, value):
    if key in _ENUM_NAMES and isinstance(value, str):
        if value.lower() in _ENUM_NAMES[key]:
            return float(_ENUM_NAMES[key][value.lower()])
        # libelm's own table also knows the official spellings
        # ("neuronio_routing"): elm_param_value_from_name
        v = ctypes.c_int()
        if lib().elm_param_value_from_name(int(key), value.encode(), ctypes.byref(v)) == 0:
            return float(v.value)
        raise ValueError("%s: %r is not one of %s" % (
            param_name(key), value, ", ".join(_ENUM_NAMES[key])))
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars
        except (TypeError, ValueError):
            raise TypeError("%s: a number is needed, not %s" % (
                param_name(key), type(value).__name__)) from None
    return float(value)


def _decode_value(key, value):
    if key in _ENUM_KEYS:
        try:
            return _ENUM_KEYS[key](int(value))
        except ValueError:
            return int(value)
    if key in _BOOL_KEYS:
        return bool(value)
    if key in _INT_KEYS:
        return int(value)
    return value


class Config(Handle):
    """The hyper-parameters of an ELM neuron (elm_config).

    ``Config(num_input=1278, num_output=2, num_memory=20)`` starts from the
    reference defaults and sets the given keys. Keys are the YAML names
    (``num_memory``, ``lambda_value``, ``tau_s_value``, ``delta_t`` ...),
    the reference's aliases, or :class:`Param` members. Values: numbers;
    enums also by name (``formulation="v2"``, ``mlp_activation="silu"``,
    ``input_to_synapse_routing="neuronio"``); booleans for
    ``learn_memory_tau``.

    Read and write as attributes or items: ``cfg.num_memory = 50``,
    ``cfg["tau_s_value"]``. Integer keys read back as int, enums as
    :class:`Formulation` / :class:`Activation` / :class:`Routing`, the flag
    as bool, the rest as float (times in ms). A value out of bounds raises
    ElmError (ELM_E_INVALID) and leaves the config unchanged; an unknown key
    raises KeyError (item access) or AttributeError (attribute access).
    """

    _free_fn = "elm_config_free"

    def __init__(self, _handle=None, **values):
        if _handle is None:
            out = _out_handle()
            check(lib().elm_config_create(ctypes.byref(out)), "elm_config_create")
            _handle = out.value
        self._own(_handle)
        for name, value in values.items():
            self[name] = value

    @classmethod
    def _wrap(cls, ptr):
        obj = cls.__new__(cls)
        obj._own(ptr)
        return obj

    @classmethod
    def _copy_of(cls, ptr):
        out = _out_handle()
        check(lib().elm_config_copy(ptr, ctypes.byref(out)), "elm_config_copy")
        return cls._wrap(out.value)

    # -- item and attribute access
    def get(self, key):
        """Value of one key (see the class docstring for its type)."""
        k = param_key(key)
        v = ctypes.c_double()
        check(lib().elm_config_get(self._h, int(k), ctypes.byref(v)),
              "elm_config_get(%s)" % param_name(k))
        return _decode_value(k, v.value)

    def set(self, key, value):
        """Set one key; validated against its bounds at once."""
        k = param_key(key)
        check(lib().elm_config_set(self._h, int(k), _encode_value(k, value)),
              "elm_config_set(%s)" % param_name(k))

    def __getitem__(self, key):
        return self.get(key)

    def __setitem__(self, key, value):
        self.set(key, value)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            k = param_key(name)
        except KeyError as e:
            raise AttributeError(str(e)) from None
        return self.get(k)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        try:
            k = param_key(name)
        except KeyError as e:
            raise AttributeError(str(e)) from None
        self.set(k, value)

    def __contains__(self, key):
        try:
            param_key(key)
            return True
        except (KeyError, TypeError):
            return False

    def keys(self):
        """The YAML names of every key, in elm_param order."""
        return [param_name(p) for p in Param]

    def __iter__(self):
        return iter(self.keys())

    def items(self):
        return [(param_name(p), self.get(p)) for p in Param]

    def to_dict(self):
        """{yaml name: value}; enums as their lower-case names ("v1")."""
        out = {}
        for name, value in self.items():
            if isinstance(value, (Formulation, Activation, Routing)):
                value = value.name.lower()
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, values):
        return cls(**dict(values))

    @staticmethod
    def bounds(key):
        """(lo, hi) inclusive bounds of a key's values."""
        k = param_key(key)
        lo, hi = ctypes.c_double(), ctypes.c_double()
        check(lib().elm_config_bounds(int(k), ctypes.byref(lo), ctypes.byref(hi)),
              "elm_config_bounds")
        return lo.value, hi.value

    def validate(self):
        """Check the whole config (ElmError ELM_E_CONFIG naming the
        conflict); returns self."""
        check(lib().elm_config_validate(self._h), "elm_config_validate")
        return self

    def copy(self):
        return Config._copy_of(self._h)

    __copy__ = copy

    def __eq__(self, other):
        if not isinstance(other, Config):
            return NotImplemented
        return self.items() == other.items()

    __hash__ = None

    # -- YAML
    @classmethod
    def from_yaml(cls, text):
        """Parse YAML (or JSON) text: a mapping of model keys."""
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = _out_handle()
        check(lib().elm_config_from_yaml(raw, len(raw), ctypes.byref(out)),
              "elm_config_from_yaml")
        return cls._wrap(out.value)

    @classmethod
    def load_yaml(cls, path):
        out = _out_handle()
        check(lib().elm_config_load_yaml(path_arg(path), ctypes.byref(out)),
              "elm_config_load_yaml")
        return cls._wrap(out.value)

    def to_yaml(self):
        """The config as YAML text (every key, fixed order)."""
        return _read_sized(lambda dst, cap, size: lib().elm_config_to_yaml(
            self._h, dst, cap, size), "elm_config_to_yaml").rstrip(b"\0").decode()

    def save_yaml(self, path):
        check(lib().elm_config_save_yaml(self._h, path_arg(path)),
              "elm_config_save_yaml")

    def __repr__(self):
        if self.closed:
            return "<Config (closed)>"
        return "Config(%s)" % ", ".join("%s=%r" % kv for kv in self.to_dict().items())


def _read_sized(call, what):
    """Bytes from a C function following the size-query rule of elm.h §11:
    call(NULL, 0, &size) reports the size, then call(buf, size, &size)."""
    size = ctypes.c_size_t()
    rc = call(None, 0, ctypes.byref(size))
    if rc not in (0, _capi.Status.E_INVALID) or (rc != 0 and size.value == 0):
        check(rc, what)
    for _ in range(4):  # the size can only change if another thread interferes
        buf = ctypes.create_string_buffer(max(size.value, 1))
        need = size.value
        rc = call(buf, need, ctypes.byref(size))
        if rc == 0:
            return buf.raw[:size.value]
        if size.value <= need:
            check(rc, what)
    check(rc, what)


# ---------------------------------------------------------------------------
# Model


class ParamInfo(tuple):
    """(name, shape, trainable) of one parameter tensor."""
    __slots__ = ()

    def __new__(cls, name, shape, trainable):
        return tuple.__new__(cls, (name, tuple(shape), bool(trainable)))

    name = property(lambda self: self[0])
    shape = property(lambda self: self[1])
    trainable = property(lambda self: self[2])

    @property
    def numel(self):
        n = 1
        for d in self[1]:
            n *= d
        return n

    def __repr__(self):
        return "ParamInfo(name=%r, shape=%r, trainable=%r)" % self


class Model(Handle):
    """An ELM neuron: hyper-parameters, parameters and routing (elm_model).

    ``Model(config, seed=0)`` initialises the parameters from ``seed``
    (model.md §4; the same values on every platform). Also
    :meth:`load`, :meth:`from_bytes`, :meth:`from_official`.

    Parameters are read and written by name (libelm name or official
    alias): ``model.get_param("readout.weight")`` -> array of the tensor's
    shape, ``model.set_param(name, values)``; ``model.params`` is a
    dict-like view of the same. ``model.meta`` is the metadata (str -> str).
    """

    _free_fn = "elm_model_free"

    def __init__(self, config=None, seed=0, **values):
        if config is None:
            config = Config(**values)
        elif isinstance(config, dict):
            config = Config(**dict(config, **values))
        elif values and isinstance(config, Config):
            config = config.copy()
            for k, v in values.items():
                config[k] = v
        if not isinstance(config, Config):
            raise TypeError("Model(config, seed): config must be a Config or "
                            "a dict, not %s" % type(config).__name__)
        out = _out_handle()
        check(lib().elm_model_create(config._h, int(seed), ctypes.byref(out)),
              "elm_model_create")
        self._own(out.value)

    @classmethod
    def _wrap(cls, ptr):
        obj = cls.__new__(cls)
        obj._own(ptr)
        return obj

    # -- files
    @classmethod
    def load(cls, path):
        """Load a .elm file (or a training checkpoint, as its model)."""
        out = _out_handle()
        check(lib().elm_model_load(path_arg(path), ctypes.byref(out)),
              "elm_model_load(%s)" % os.fspath(path))
        return cls._wrap(out.value)

    @classmethod
    def from_bytes(cls, data):
        """Load a model from the bytes of a .elm file (bytes, bytearray,
        memoryview)."""
        mv = memoryview(data).cast("B")
        buf = _b.as_input(mv, "uint8", None, "data")
        out = _out_handle()
        check(lib().elm_model_load_buffer(buf.ptr, buf.n, ctypes.byref(out)),
              "elm_model_load_buffer")
        return cls._wrap(out.value)

    @classmethod
    def from_official(cls, path, config_json=None):
        """Import an official PyTorch checkpoint (no torch needed).

        ``path``: the ``.pt`` file, or a directory holding exactly one
        ``.pt`` (the official layout: ``neuronio_best_model_state.pt``
        beside ``model_config.json``). ``config_json`` None looks beside the
        checkpoint. The metadata records the source (elm.convert)."""
        from . import convert, elmfile
        path = os.fspath(path)
        if os.path.isdir(path):
            pts = sorted(f for f in os.listdir(path) if f.endswith(".pt"))
            if len(pts) != 1:
                raise ValueError("%s: expected one .pt checkpoint in the "
                                 "directory, found %s" % (path, pts or "none"))
            path = os.path.join(path, pts[0])
        model = convert.official_to_elm(path, config_json, None)
        return cls.from_bytes(elmfile.encode(model))

    def save(self, path):
        """Write the model to a .elm file (atomically)."""
        check(lib().elm_model_save(self._h, path_arg(path)),
              "elm_model_save(%s)" % os.fspath(path))

    def to_bytes(self):
        """The model as the bytes of a .elm file."""
        return _read_sized(lambda dst, cap, size: lib().elm_model_save_buffer(
            self._h, dst, cap, size), "elm_model_save_buffer")

    def copy(self):
        """An independent copy (through the .elm bytes)."""
        return Model.from_bytes(self.to_bytes())

    def __getstate__(self):
        return {"elm": self.to_bytes()}

    def __setstate__(self, st):
        other = Model.from_bytes(st["elm"])
        ptr, other._ptr = other._ptr, None
        self._own(ptr)

    # -- hyper-parameters and sizes
    @property
    def config(self):
        """A copy of the model's config, derived values resolved
        (changing it does not change the model)."""
        return Config._copy_of(lib().elm_model_config(self._h))

    def size(self, what):
        """One derived size (elm_size or its name: "input", "state", ...)."""
        if isinstance(what, str):
            what = Size[what.upper()]
        v = ctypes.c_size_t()
        check(lib().elm_model_size(self._h, int(what), ctypes.byref(v)),
              "elm_model_size")
        return v.value

    num_input = property(lambda self: self.size(Size.INPUT), doc="n_in")
    num_output = property(lambda self: self.size(Size.OUTPUT), doc="n_out")
    num_memory = property(lambda self: self.size(Size.MEMORY), doc="n_m")
    num_branch = property(lambda self: self.size(Size.BRANCH), doc="n_b")
    num_synapse = property(lambda self: self.size(Size.SYNAPSE), doc="n_s")
    hidden_size = property(lambda self: self.size(Size.HIDDEN), doc="H")
    num_params = property(lambda self: self.size(Size.PARAMS),
                          doc="floats in the parameter buffer")
    num_trainable = property(lambda self: self.size(Size.TRAINABLE),
                             doc="trainable parameters (the paper's count)")
    state_size = property(lambda self: self.size(Size.STATE),
                          doc="floats of recurrent state per stream")

    @property
    def formulation(self):
        return self.config_value(Param.FORMULATION)

    def config_value(self, key):
        """One hyper-parameter of the model, without copying the config."""
        k = param_key(key)
        v = ctypes.c_double()
        check(lib().elm_config_get(lib().elm_model_config(self._h), int(k),
                                   ctypes.byref(v)), "elm_config_get")
        return _decode_value(k, v.value)

    # -- parameters
    def param_info(self):
        """[ParamInfo(name, shape, trainable)] in parameter-buffer order."""
        L = lib()
        h = self._h
        out = []
        for i in range(self.size(Size.NUM_TENSORS)):
            name, ndim, tr = ctypes.c_char_p(), ctypes.c_int(), ctypes.c_int()
            shape = (ctypes.c_int64 * _capi.ELM_MAX_DIMS)()
            check(L.elm_model_param_info(h, i, ctypes.byref(name), ctypes.byref(ndim),
                                         shape, ctypes.byref(tr)), "elm_model_param_info")
            out.append(ParamInfo(name.value.decode(), shape[:ndim.value], tr.value))
        return out

    def param_names(self):
        return [p.name for p in self.param_info()]

    def param_shape(self, name):
        """Shape of a named parameter (libelm name or official alias)."""
        ndim = ctypes.c_int()
        shape = (ctypes.c_int64 * _capi.ELM_MAX_DIMS)()
        check(lib().elm_model_param_shape(self._h, cstr(name, "name"),
                                          ctypes.byref(ndim), shape),
              "elm_model_param_shape(%s)" % name)
        return tuple(shape[:ndim.value])

    def get_param(self, name, use_numpy=None):
        """A copy of a named parameter, shaped (numpy) or flat
        (array.array without numpy)."""
        shape = self.param_shape(name)
        arr, buf = _b.output(None, shape, "float32", name, use_numpy)
        check(lib().elm_model_get_param(self._h, cstr(name, "name"), buf.ptr,
                                        buf.n), "elm_model_get_param(%s)" % name)
        return arr

    def set_param(self, name, values):
        """Overwrite a named parameter; ``values`` must have its shape (a
        1-D tensor may be given flat; a flat buffer of the right element
        count is taken as that shape). NaN/Inf and tau <= 0 are refused
        (ElmError) and nothing changes."""
        shape = self.param_shape(name)
        buf = _b.as_input(values, "float32", None, name)
        got = buf.shape
        if len(got) == 1 and buf.n == _prod(shape):
            got = shape  # a flat buffer or a flat 1-D tensor
        dims = _b.int64_array(got)
        check(lib().elm_model_set_param(self._h, cstr(name, "name"), buf.ptr,
                                        len(got), dims),
              "elm_model_set_param(%s)" % name)

    @property
    def params(self):
        """Dict-like view: ``model.params[name]`` (a copy),
        ``model.params[name] = values``, iteration over the names."""
        return _Params(self)

    def state_dict(self):
        """{name: array} copies of every parameter tensor."""
        return {p.name: self.get_param(p.name) for p in self.param_info()}

    def load_state_dict(self, tensors):
        """Set every tensor of a {name: array} mapping (libelm names or
        official aliases). Stops at the first refused tensor."""
        for name, values in tensors.items():
            self.set_param(name, values)

    def parameters(self, use_numpy=None):
        """A copy of the whole parameter buffer (num_params floats, tensors
        in param_info order): the layout of gradients."""
        n = self.num_params
        arr, buf = _b.output(None, (n,), "float32", "params", use_numpy)
        src = lib().elm_model_params(self._h)
        if n:
            ctypes.memmove(buf.ptr, src, n * 4)
        return arr

    def set_parameters(self, values):
        """Overwrite the whole parameter buffer (num_params floats in the
        layout of :meth:`parameters`). Every tensor is checked first
        (NaN/Inf, tau <= 0: ElmError) and on any error nothing changes."""
        buf = _b.as_input(values, "float32", (self.num_params,), "values")
        check(lib().elm_model_set_params(self._h, buf.ptr, buf.n), "elm_model_set_params")

    def get_routing(self, use_numpy=None):
        """(idx int64 (n_s), mask uint8 (n_s)): synapse j reads input idx[j]
        scaled by mask[j]."""
        n = self.num_synapse
        idx, bi = _b.output(None, (n,), "int64", "idx", use_numpy)
        mask, bm = _b.output(None, (n,), "uint8", "mask", use_numpy)
        check(lib().elm_model_get_routing(self._h, bi.ptr, bm.ptr, n),
              "elm_model_get_routing")
        return idx, mask

    def set_routing(self, idx, mask):
        """Replace the routing table (refused for models without routing)."""
        n = self.num_synapse
        bi = _b.as_input(idx, "int64", (n,), "idx")
        bm = _b.as_input(mask, "uint8", (n,), "mask")
        check(lib().elm_model_set_routing(self._h, bi.ptr, bm.ptr, n),
              "elm_model_set_routing")

    # -- metadata
    @property
    def meta(self):
        """The metadata as a mutable dict-like view (str -> str)."""
        return _Meta(self)

    # -- compute
    def forward(self, x, out=None, use_numpy=None):
        """Sequence forward from the zero state: x (B, T, n_in) ->
        y (B, T, n_out). ``out`` (optional) receives y."""
        n_in, n_out = self.num_input, self.num_output
        bx = _b.as_input(x, "float32", (None, None, n_in), "x")
        B, T, _ = bx.shape
        y, by = _b.output(out, (B, T, n_out), "float32", "out",
                          _b.like_input(x, use_numpy))
        check(lib().elm_model_forward(self._h, bx.ptr, B, T, by.ptr),
              "elm_model_forward")
        return y

    __call__ = forward

    def state(self, batch=1):
        """A new :class:`State` of ``batch`` streams on this model."""
        return State(self, batch)

    def evaluate_neuronio(self, path, mode="windows"):
        """NeuronIO metrics of this model on a converted file
        (elm_neuronio_evaluate); mode "windows" (the official protocol) or
        "continuous". Returns a dict (auc, soma_rmse, ...)."""
        if isinstance(mode, str):
            mode = _capi.NeuronioMode[mode.upper()]
        m = _capi.NeuronioMetrics()
        check(_capi.require("elm_neuronio_evaluate")(
            self._h, path_arg(path), int(mode), ctypes.byref(m)),
            "elm_neuronio_evaluate")
        return m.as_dict()

    def __repr__(self):
        if self.closed:
            return "<Model (closed)>"
        return "<Model %s n_in=%d n_out=%d n_m=%d params=%d>" % (
            self.formulation.name.lower(), self.num_input, self.num_output,
            self.num_memory, self.num_params)


def _prod(dims):
    n = 1
    for d in dims:
        n *= d
    return n


class _Params:
    def __init__(self, model):
        self._model = model

    def __getitem__(self, name):
        try:
            return self._model.get_param(name)
        except ElmError as e:
            if e.code == _capi.Status.E_UNKNOWN_NAME:
                raise KeyError(name) from e
            raise

    def __setitem__(self, name, values):
        self._model.set_param(name, values)

    def __contains__(self, name):
        try:
            self._model.param_shape(name)
            return True
        except ElmError:
            return False

    def keys(self):
        return self._model.param_names()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return self._model.size(Size.NUM_TENSORS)

    def items(self):
        return [(n, self[n]) for n in self.keys()]

    def values(self):
        return [self[n] for n in self.keys()]


class _Meta:
    """Metadata of a model: a dict-like view in insertion order."""

    def __init__(self, model):
        self._model = model

    def __getitem__(self, key):
        raw = lib().elm_model_get_meta(self._model._h, cstr(key, "key"))
        if raw is None:
            raise KeyError(key)
        return raw.decode("utf-8", "replace")

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key, value):
        if not isinstance(value, (str, bytes)):
            raise TypeError("metadata values are strings, not %s" %
                            type(value).__name__)
        check(lib().elm_model_set_meta(self._model._h, cstr(key, "key"),
                                       cstr(value, "value")),
              "elm_model_set_meta(%s)" % key)

    def __delitem__(self, key):
        if key not in self:
            raise KeyError(key)
        check(lib().elm_model_set_meta(self._model._h, cstr(key, "key"), None),
              "elm_model_set_meta(%s)" % key)

    def __contains__(self, key):
        return lib().elm_model_get_meta(self._model._h, cstr(key, "key")) is not None

    def __len__(self):
        return lib().elm_model_meta_count(self._model._h)

    def keys(self):
        h = self._model._h
        L = lib()
        return [L.elm_model_meta_key(h, i).decode("utf-8", "replace")
                for i in range(L.elm_model_meta_count(h))]

    def __iter__(self):
        return iter(self.keys())

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def update(self, other=(), **kw):
        for k, v in dict(other, **kw).items():
            self[k] = v

    def to_dict(self):
        return dict(self.items())

    def __repr__(self):
        return "meta(%r)" % self.to_dict()


# ---------------------------------------------------------------------------
# State


class State(Handle):
    """The recurrent state of ``batch`` independent streams of one model,
    with every workspace a forward needs (elm_state). Starts at zero.

    ``step(x)``: x (B, n_in) -> y (B, n_out), one time step (1 ms with the
    default dt). ``forward(X)``: X (B, T, n_in) -> Y (B, T, n_out),
    continuing from the current state. ``reset()`` zeroes it; ``get()`` /
    ``set(v)`` read and write it as (B, state_size) floats (checkpoints).

    A State keeps its Model alive. One thread at a time per State; many
    States may run on one Model concurrently (the GIL is released during
    the C call).
    """

    _free_fn = "elm_state_free"

    def __init__(self, model, batch=1):
        if not isinstance(model, Model):
            raise TypeError("State(model, batch): model must be a Model")
        batch = int(batch)
        if batch < 1:
            raise ValueError("State: batch must be >= 1, got %d" % batch)
        out = _out_handle()
        check(lib().elm_state_create(model._h, batch, ctypes.byref(out)),
              "elm_state_create")
        self._own(out.value, model)
        self._model = model
        self._batch = batch
        self._n_in = model.num_input
        self._n_out = model.num_output
        self._size = model.state_size

    @property
    def model(self):
        return self._model

    @property
    def batch(self):
        """B, the number of streams."""
        return lib().elm_state_batch(self._h)

    @property
    def state_size(self):
        """Floats of state per stream."""
        return self._size

    def step(self, x, out=None, use_numpy=None):
        """One time step for every stream: x (B, n_in) -> y (B, n_out).
        A NaN/Inf in x raises ElmError (ELM_E_NONFINITE), state unchanged."""
        h = self._h
        bx = _b.as_input(x, "float32", (self._batch, self._n_in), "x")
        y, by = _b.output(out, (self._batch, self._n_out), "float32", "out",
                          _b.like_input(x, use_numpy))
        check(lib().elm_state_step(h, bx.ptr, by.ptr), "elm_state_step")
        return y

    def forward(self, x, out=None, use_numpy=None):
        """T steps for every stream: x (B, T, n_in) -> y (B, T, n_out)."""
        h = self._h
        bx = _b.as_input(x, "float32", (self._batch, None, self._n_in), "x")
        T = bx.shape[1]
        y, by = _b.output(out, (self._batch, T, self._n_out), "float32", "out",
                          _b.like_input(x, use_numpy))
        check(lib().elm_state_forward(h, bx.ptr, T, by.ptr), "elm_state_forward")
        return y

    __call__ = forward

    def step_events(self, offsets, channels, values=None, out=None, use_numpy=None):
        """One step from events: stream b's inputs are channels[k] with
        values[k] (1 when values is None) for k in [offsets[b],
        offsets[b+1]). Returns y (B, n_out). Bad events raise ElmError,
        state unchanged."""
        off, ch, val = _b.events(self._batch, offsets, channels, values)
        y, by = _b.output(out, (self._batch, self._n_out), "float32", "out",
                          _b.like_input(offsets, use_numpy))
        check(lib().elm_state_step_events(self._h, off.ptr, ch.ptr,
                                          val.ptr if val is not None else None,
                                          by.ptr), "elm_state_step_events")
        return y

    def forward_events(self, T, offsets, channels, values=None, out=None, use_numpy=None):
        """T steps from events; row b * T + t of the CSR arrays (offsets
        has B * T + 1 entries) is stream b at step t. Returns y
        (B, T, n_out)."""
        T = int(T)
        if T < 0:
            raise ValueError("T must be >= 0")
        off, ch, val = _b.events(self._batch * T, offsets, channels, values)
        y, by = _b.output(out, (self._batch, T, self._n_out), "float32", "out",
                          _b.like_input(offsets, use_numpy))
        check(lib().elm_state_forward_events(self._h, T, off.ptr, ch.ptr,
                                             val.ptr if val is not None else None,
                                             by.ptr), "elm_state_forward_events")
        return y

    def forward_traced(self, x, use_numpy=None):
        """Like forward, also recording internal traces. Returns a dict:
        ``y`` (B, T, n_out), ``syn`` (B, T, n_s) synaptic traces (v1; None
        for v2), ``branch`` (B, T, n_b) the MLP branch input, ``mem``
        (B, T, n_m) the memory."""
        h = self._h
        m = self._model
        bx = _b.as_input(x, "float32", (self._batch, None, self._n_in), "x")
        B, T = self._batch, bx.shape[1]
        npy = _b.like_input(x, use_numpy)
        y, by = _b.output(None, (B, T, self._n_out), "float32", "y", npy)
        v1 = m.formulation == Formulation.V1
        syn, bs = (_b.output(None, (B, T, m.num_synapse), "float32", "syn", npy)
                   if v1 else (None, None))
        br, bb = _b.output(None, (B, T, m.num_branch), "float32", "branch", npy)
        mem, bmem = _b.output(None, (B, T, m.num_memory), "float32", "mem", npy)
        check(lib().elm_state_forward_traced(h, bx.ptr, T, by.ptr,
                                             bs.ptr if bs else None,
                                             bb.ptr, bmem.ptr),
              "elm_state_forward_traced")
        return {"y": y, "syn": syn, "branch": br, "mem": mem}

    def reset(self, stream=None):
        """Zero one stream (0 <= stream < B) or, with None, all."""
        s = _capi.ELM_ALL_STREAMS if stream is None else int(stream)
        check(lib().elm_state_reset(self._h, s), "elm_state_reset")

    def set_threads(self, n):
        """Run the B streams on n threads (1 <= n <= B; 1 = the calling
        thread only). Results are deterministic for a given n."""
        check(lib().elm_state_set_threads(self._h, int(n)), "elm_state_set_threads")

    def get(self, out=None, use_numpy=None):
        """A copy of the state as (B, state_size) floats."""
        h = self._h
        v, bv = _b.output(out, (self._batch, self._size), "float32", "out",
                          use_numpy)
        check(lib().elm_state_get(h, bv.ptr, bv.n), "elm_state_get")
        return v

    def set(self, values):
        """Overwrite the state from (B, state_size) floats (or a flat buffer
        of B * state_size). NaN/Inf refused, state unchanged."""
        h = self._h
        bv = _b.as_input(values, "float32", (self._batch, self._size), "state")
        check(lib().elm_state_set(h, bv.ptr, bv.n), "elm_state_set")

    def copy(self):
        """A new State of the same model and batch holding this state."""
        other = State(self._model, self._batch)
        other.set(self.get())
        return other

    def __repr__(self):
        if self.closed:
            return "<State (closed)>"
        return "<State batch=%d state_size=%d>" % (self._batch, self._size)
