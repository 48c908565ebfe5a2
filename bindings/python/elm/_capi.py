"""The raw C API of libelm over ctypes: library loading, every prototype of
include/elm.h, the enum constants and the error type.

This module is the only place that knows the C signatures. Everything else
(elm.core, elm.nn, elm.training, elm.data) calls ``lib().elm_...`` and
passes the result through :func:`check`.

Conventions of the prototypes below:

* object handles (``elm_model *`` ...) are ``c_void_p``; out-handles
  (``elm_model **``) are ``POINTER(c_void_p)``: pass ``ctypes.byref(h)``;
* data arrays (``float *``, ``int32_t *``, ``int64_t *``, ``uint8_t *``,
  ``void *``, ``double *``) are ``c_void_p``: pass an address (an int, as
  given by :mod:`elm._buffers`), a ctypes array, or None for NULL;
* scalar out-parameters are typed pointers (``POINTER(c_size_t)`` ...):
  pass ``ctypes.byref(c_size_t())``;
* strings are ``c_char_p`` (bytes in, bytes out);
* enums are ``c_int``.

Loading. :func:`lib` loads the library once per process and searches, in
order: the environment variable ``ELM_LIBRARY`` (a path; nothing else is
tried when it is set), a ``libelm.so*`` inside this package directory, the
build tree of a source checkout (``<repo>/build/lib/libelm.so``), then the
system (``ctypes.util.find_library("elm")``, ``libelm.so.0``). The loaded
library must have the major version this package was written for.
"""

import ctypes
import ctypes.util
import enum
import glob
import os
import threading

from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int,
                    c_int64, c_size_t, c_uint, c_uint64, c_void_p)

#: The version of the C API this package was written against (elm.h).
EXPECTED_MAJOR = 0
EXPECTED_MINOR = 4

ELM_MAX_DIMS = 4
ELM_ALL_STREAMS = -1
ELM_LISTOPS_VOCAB = 15


# ---------------------------------------------------------------------------
# Enums (values fixed by elm.h). Each is also exported under its C name:
# ELM_E_SHAPE, ELM_NUM_INPUT, ELM_SIZE_PARAMS, ...

class Status(enum.IntEnum):
    OK = 0
    E_NULL = -1
    E_INVALID = -2
    E_SHAPE = -3
    E_NOMEM = -4
    E_NONFINITE = -5
    E_UNKNOWN_NAME = -6
    E_CONFIG = -7
    E_UNSUPPORTED = -8
    E_IO = -9
    E_FORMAT = -10
    E_INTERNAL = -11
    E_TRUNCATED = -12
    E_CHECKSUM = -13
    E_VERSION = -14
    E_LIMIT = -15


class Param(enum.IntEnum):
    """Hyper-parameter keys (elm_param)."""
    FORMULATION = 1
    NUM_INPUT = 2
    NUM_OUTPUT = 3
    NUM_MEMORY = 4
    LAMBDA = 5
    MLP_NUM_LAYERS = 6
    MLP_HIDDEN_SIZE = 7
    MLP_ACTIVATION = 8
    TAU_S = 9
    TAU_M_MIN = 10
    TAU_M_MAX = 11
    LEARN_TAU_M = 12
    W_S_INIT = 13
    NUM_BRANCH = 14
    SYNAPSES_PER_BRANCH = 15
    ROUTING = 16
    DT = 17


class Formulation(enum.IntEnum):
    V1 = 1
    V2 = 2


class Activation(enum.IntEnum):
    RELU = 0
    SILU = 1


class Routing(enum.IntEnum):
    NONE = 0
    RANDOM = 1
    NEURONIO = 2


class Size(enum.IntEnum):
    INPUT = 1
    OUTPUT = 2
    MEMORY = 3
    BRANCH = 4
    SYNAPSE = 5
    HIDDEN = 6
    PARAMS = 7
    TRAINABLE = 8
    NUM_TENSORS = 9
    STATE = 10


class TapeFlag(enum.IntFlag):
    CHECKPOINT = 1
    GRAD_TAU = 2


class LossKind(enum.IntEnum):
    CE_LAST = 1
    CE_ALL = 2
    NEURONIO = 3
    MSE = 4


class OptimizerKind(enum.IntEnum):
    SGD = 1
    ADAM = 2
    ADAMW = 3
    ADAMAX = 4


class OptimParam(enum.IntEnum):
    LR = 1
    MOMENTUM = 2
    DAMPENING = 3
    NESTEROV = 4
    BETA1 = 5
    BETA2 = 6
    EPS = 7
    WEIGHT_DECAY = 8
    CLIP_NORM = 9
    SCHEDULE = 10
    TOTAL_STEPS = 11
    WARMUP_STEPS = 12
    MIN_LR = 13


class Schedule(enum.IntEnum):
    CONSTANT = 0
    COSINE = 1


class DatasetOption(enum.IntEnum):
    SHUFFLE = 1
    SEED = 2
    DROP_LAST = 3
    PREFETCH = 4


class DatasetDim(enum.IntEnum):
    SAMPLES = 1
    STEPS = 2
    INPUTS = 3
    TARGETS = 4
    LABELS = 5


class NeuronioMode(enum.IntEnum):
    WINDOWS = 0
    CONTINUOUS = 1


class IdxSequence(enum.IntEnum):
    PIXELS = 0
    ROWS = 1


class TrainOption(enum.IntEnum):
    DROPOUT = 1
    EVAL_DROPOUT = 2
    SEED = 3
    EPOCHS = 4
    PATIENCE = 5
    MAX_BATCHES = 6
    NONFINITE = 7
    SELECT = 8
    THREADS = 9


class NonfinitePolicy(enum.IntEnum):
    STOP = 0
    SKIP = 1


class Metric(enum.IntEnum):
    TRAIN_LOSS = 1
    VAL_LOSS = 2
    VAL_ACCURACY = 3
    VAL_AUC = 4
    VAL_RMSE = 5
    EPOCH = 6
    STEP = 7
    BEST_EPOCH = 8
    BEST = 9
    SKIPPED = 10
    LAST_LOSS = 11
    LR = 12
    BATCH = 13  # since 0.5


class TrainEvent(enum.IntEnum):
    STEP = 1
    EPOCH = 2


class ValueType(enum.IntEnum):
    NUMBER = 1
    INTEGER = 2
    BOOL = 3
    ENUM = 4
    STRING = 5
    LIST = 6


# enum class -> prefix of its members' C names
_C_PREFIX = [
    (Status, "ELM_"), (Param, "ELM_"), (Formulation, "ELM_"),
    (Activation, "ELM_"), (Routing, "ELM_ROUTING_"), (Size, "ELM_SIZE_"),
    (TapeFlag, "ELM_TAPE_"), (LossKind, "ELM_LOSS_"),
    (OptimizerKind, "ELM_OPTIM_"), (OptimParam, "ELM_OPTIM_"),
    (Schedule, "ELM_SCHEDULE_"), (DatasetOption, "ELM_DATASET_"),
    (DatasetDim, "ELM_DATASET_"), (NeuronioMode, "ELM_NEURONIO_"),
    (IdxSequence, "ELM_IDX_"), (TrainOption, "ELM_TRAIN_"),
    (NonfinitePolicy, "ELM_NONFINITE_"), (Metric, "ELM_METRIC_"),
    (TrainEvent, "ELM_EVENT_"), (ValueType, "ELM_VALUE_"),
]
for _cls, _prefix in _C_PREFIX:
    for _member in _cls:
        globals()[_prefix + _member.name] = _member
del _cls, _prefix, _member


def status_name(code):
    """"ELM_E_SHAPE" for -3; "ELM_E?(-99)" for a code elm.h does not know."""
    try:
        return "ELM_" + Status(code).name
    except ValueError:
        return "ELM_E?(%d)" % code


# ---------------------------------------------------------------------------
# Errors

class ElmError(Exception):
    """A libelm call failed.

    Attributes: ``code`` (the negative ELM_E_* int), ``status`` (its C name,
    "ELM_E_SHAPE"), ``function`` (the C function or the Python operation
    that failed) and ``message`` (elm_last_error(), the library's detailed
    message, or elm_strerror() when that is empty).
    """

    def __init__(self, code, function, message):
        self.code = int(code)
        self.status = status_name(self.code)
        self.function = function
        self.message = message
        super().__init__("%s failed (%s): %s" % (function, self.status, message))


def last_error():
    """The calling thread's last libelm error message (str)."""
    raw = lib().elm_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def check(rc, what):
    """Raise ElmError for a non-zero status ``rc`` of the call named ``what``
    (call it right after the C function: the message is per thread and
    valid until the next libelm call)."""
    if rc != 0:
        msg = last_error()
        if not msg:
            raw = lib().elm_strerror(rc)
            msg = raw.decode("utf-8", "replace") if raw else ""
        raise ElmError(rc, what, msg)
    return rc


class LibraryNotFound(OSError):
    """libelm could not be loaded; the message lists every place tried."""


class ClosedError(ValueError):
    """An operation on an object that was closed (its C handle freed)."""


# ---------------------------------------------------------------------------
# Structures and callback types

class NeuronioMetrics(Structure):
    """elm_neuronio_metrics."""
    _fields_ = [
        ("auc", c_double),
        ("tp_at_fp_0025", c_double),
        ("pauc_at_fp_0025", c_double),
        ("tp_at_fp_01", c_double),
        ("pauc_at_fp_01", c_double),
        ("soma_rmse", c_double),
        ("soma_mae", c_double),
        ("soma_explained_variance", c_double),
        ("n_simulations", c_size_t),
        ("n_spikes", c_size_t),
    ]

    def as_dict(self):
        return {name: getattr(self, name) for name, _ in self._fields_}


_f32p = POINTER(ctypes.c_float)
_i32p = POINTER(ctypes.c_int32)
_i64p = POINTER(ctypes.c_int64)

#: int (*elm_progress_fn)(void *user, const elm_trainer *trainer, int event)
PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int)
#: int (*read)(void *user, uint64_t epoch, size_t i, float *x,
#:             float *target, int32_t *labels, int64_t *length)
SOURCE_READ_FN = CFUNCTYPE(c_int, c_void_p, c_uint64, c_size_t, _f32p, _f32p,
                           _i32p, _i64p)
#: int (*next)(void *user, float *x, float *target, int32_t *labels,
#:             int64_t *length)
SOURCE_NEXT_FN = CFUNCTYPE(c_int, c_void_p, _f32p, _f32p, _i32p, _i64p)
#: int (*reset)(void *user, uint64_t epoch)
SOURCE_RESET_FN = CFUNCTYPE(c_int, c_void_p, c_uint64)
#: void (*free)(void *user)
SOURCE_FREE_FN = CFUNCTYPE(None, c_void_p)


class Source(Structure):
    """elm_source. Leave a callback unset for NULL. The C library copies the
    struct, but not the Python callback objects: keep them (and anything
    they reference) alive as long as a dataset reads the source."""
    _fields_ = [
        ("N", c_size_t),
        ("T", c_size_t),
        ("n_in", c_size_t),
        ("n_target", c_size_t),
        ("n_label", c_size_t),
        ("read", SOURCE_READ_FN),
        ("next", SOURCE_NEXT_FN),
        ("reset", SOURCE_RESET_FN),
        ("free", SOURCE_FREE_FN),
        ("user", c_void_p),
    ]


# ---------------------------------------------------------------------------
# Prototypes: name -> (restype, argtypes), in elm.h order.

_vp, _vpp = c_void_p, POINTER(c_void_p)
_szp, _dp, _ip = POINTER(c_size_t), POINTER(c_double), POINTER(c_int)
_cpp = POINTER(c_char_p)
_I = c_int  # every fallible function returns int

PROTOTYPES = {
    # 2. library
    "elm_version_number": (c_uint, []),
    "elm_version_string": (c_char_p, []),
    "elm_strerror": (c_char_p, [c_int]),
    "elm_last_error": (c_char_p, []),
    "elm_gemm_info": (c_char_p, []),
    # 3. config
    "elm_config_create": (_I, [_vpp]),
    "elm_config_copy": (_I, [_vp, _vpp]),
    "elm_config_free": (None, [_vp]),
    "elm_config_set": (_I, [_vp, c_int, c_double]),
    "elm_config_get": (_I, [_vp, c_int, _dp]),
    "elm_config_bounds": (_I, [c_int, _dp, _dp]),
    "elm_param_name": (c_char_p, [c_int]),
    "elm_param_from_name": (_I, [c_char_p, _ip]),
    "elm_config_validate": (_I, [_vp]),
    # 4. model
    "elm_model_create": (_I, [_vp, c_uint64, _vpp]),
    "elm_model_free": (None, [_vp]),
    "elm_model_config": (_vp, [_vp]),
    "elm_model_size": (_I, [_vp, c_int, _szp]),
    "elm_model_param_info": (_I, [_vp, c_size_t, _cpp, _ip, _i64p, _ip]),
    "elm_model_param_shape": (_I, [_vp, c_char_p, _ip, _i64p]),
    "elm_model_get_param": (_I, [_vp, c_char_p, _vp, c_size_t]),
    "elm_model_set_param": (_I, [_vp, c_char_p, _vp, c_int, _i64p]),
    "elm_model_get_routing": (_I, [_vp, _vp, _vp, c_size_t]),
    "elm_model_set_routing": (_I, [_vp, _vp, _vp, c_size_t]),
    "elm_model_params": (_vp, [_vp]),
    "elm_model_set_params": (_I, [_vp, _vp, c_size_t]),
    "elm_model_forward": (_I, [_vp, _vp, c_size_t, c_size_t, _vp]),
    # 5. state
    "elm_state_create": (_I, [_vp, c_size_t, _vpp]),
    "elm_state_free": (None, [_vp]),
    "elm_state_batch": (c_size_t, [_vp]),
    "elm_state_step": (_I, [_vp, _vp, _vp]),
    "elm_state_forward": (_I, [_vp, _vp, c_size_t, _vp]),
    "elm_state_forward_traced": (_I, [_vp, _vp, c_size_t, _vp, _vp, _vp, _vp]),
    "elm_state_step_events": (_I, [_vp, _vp, _vp, _vp, _vp]),
    "elm_state_forward_events": (_I, [_vp, c_size_t, _vp, _vp, _vp, _vp]),
    "elm_state_reset": (_I, [_vp, c_int64]),
    "elm_state_set_threads": (_I, [_vp, c_int]),
    "elm_state_get": (_I, [_vp, _vp, c_size_t]),
    "elm_state_set": (_I, [_vp, _vp, c_size_t]),
    # 6. tape
    "elm_tape_create": (_I, [_vp, c_size_t, c_size_t, c_uint, _vpp]),
    "elm_tape_free": (None, [_vp]),
    "elm_tape_set_threads": (_I, [_vp, c_int]),
    "elm_tape_memory": (_I, [_vp, _szp]),
    "elm_tape_forward": (_I, [_vp, _vp, c_size_t, _vp]),
    "elm_tape_forward_events": (_I, [_vp, c_size_t, _vp, _vp, _vp, _vp]),
    "elm_tape_backward": (_I, [_vp, _vp, _vp, _vp, _vp]),
    # 7. loss and metrics
    "elm_loss_create": (_I, [c_int, c_size_t, _vpp]),
    "elm_loss_free": (None, [_vp]),
    "elm_loss_get_kind": (c_int, [_vp]),
    "elm_loss_kind_from_name": (_I, [c_char_p, _ip]),
    "elm_loss_kind_name": (c_char_p, [c_int]),
    "elm_loss_set_burn_in": (_I, [_vp, c_size_t]),
    "elm_loss_set_weights": (_I, [_vp, _vp, c_size_t]),
    "elm_loss_get_burn_in": (_I, [_vp, _szp]),
    "elm_loss_get_weights": (_I, [_vp, _vp, c_size_t]),
    "elm_loss_compute": (_I, [_vp, _vp, c_size_t, c_size_t, _vp, _vp, _vp,
                              _dp, _vp]),
    "elm_metric_accuracy": (_I, [_vp, c_size_t, c_size_t, c_size_t, _vp, _vp,
                                 c_size_t, c_int, _dp]),
    "elm_metric_roc_auc": (_I, [_vp, _vp, c_size_t, _dp]),
    "elm_metric_rmse": (_I, [_vp, _vp, c_size_t, _dp]),
    # 8. optimizer
    "elm_optimizer_create": (_I, [_vp, c_int, _vpp]),
    "elm_optimizer_free": (None, [_vp]),
    "elm_optimizer_kind_from_name": (_I, [c_char_p, _ip]),
    "elm_optimizer_kind_name": (c_char_p, [c_int]),
    "elm_optimizer_get_kind": (c_int, [_vp]),
    "elm_optimizer_set": (_I, [_vp, c_int, c_double]),
    "elm_optimizer_get": (_I, [_vp, c_int, _dp]),
    "elm_optimizer_freeze": (_I, [_vp, c_char_p, c_int]),
    "elm_optimizer_is_frozen": (_I, [_vp, c_char_p, _ip]),
    "elm_optimizer_step": (_I, [_vp, _vp, _dp]),
    "elm_optimizer_steps": (c_uint64, [_vp]),
    "elm_optimizer_lr": (c_double, [_vp]),
    "elm_optimizer_save_state": (_I, [_vp, _vp, c_size_t, _szp]),
    "elm_optimizer_load_state": (_I, [_vp, _vp, c_size_t]),
    # 9. datasets
    "elm_dataset_from_arrays": (_I, [c_size_t, c_size_t, c_size_t, _vp, _vp,
                                     c_size_t, _vp, c_size_t, _vp, _vpp]),
    "elm_dataset_free": (None, [_vp]),
    "elm_dataset_set": (_I, [_vp, c_int, c_double]),
    "elm_dataset_get": (_I, [_vp, c_int, _dp]),
    "elm_dataset_size": (_I, [_vp, c_int, _szp]),
    "elm_dataset_start_epoch": (_I, [_vp, c_uint64]),
    "elm_dataset_next": (_I, [_vp, c_size_t, _vp, _vp, _vp, _vp, _szp]),
    "elm_dataset_split": (_I, [_vp, c_size_t, c_uint64, _vpp, _vpp]),
    "elm_dataset_from_events": (_I, [c_size_t, c_size_t, _vp, _vp, _vp, _vp,
                                     c_double, c_double, _vpp]),
    "elm_dataset_from_source": (_I, [POINTER(Source), _vpp]),
    "elm_dataset_open_shd": (_I, [c_char_p, c_double, c_double, _vpp]),
    "elm_dataset_open_shd_adding": (_I, [c_char_p, c_double, c_double,
                                         c_size_t, _vpp]),
    "elm_dataset_open_neuronio": (_I, [c_char_p, c_size_t, c_size_t, _vpp]),
    "elm_neuronio_evaluate": (_I, [_vp, c_char_p, c_int,
                                   POINTER(NeuronioMetrics)]),
    "elm_dataset_open_idx": (_I, [c_char_p, c_char_p, c_int, c_int, c_uint64,
                                  _vpp]),
    "elm_dataset_open_listops": (_I, [c_char_p, c_size_t, _vpp]),
    "elm_dataset_generate_listops": (_I, [c_size_t, c_uint64, c_size_t,
                                          c_size_t, _vpp]),
    # 10. trainer
    "elm_trainer_create": (_I, [_vp, _vp, _vp, c_size_t, c_size_t, c_uint,
                                _vpp]),
    "elm_trainer_free": (None, [_vp]),
    "elm_trainer_set": (_I, [_vp, c_int, c_double]),
    "elm_trainer_get": (_I, [_vp, c_int, _dp]),
    "elm_trainer_shape": (_I, [_vp, _szp, _szp]),
    "elm_trainer_step": (_I, [_vp, _vp, c_size_t, _vp, _vp, _vp, _dp]),
    "elm_trainer_step_events": (_I, [_vp, c_size_t, _vp, _vp, _vp, _vp, _vp, _vp, _dp]),
    "elm_trainer_evaluate": (_I, [_vp, _vp]),
    "elm_trainer_fit": (_I, [_vp, _vp, _vp, PROGRESS_FN, _vp]),
    "elm_trainer_metric": (_I, [_vp, c_int, _dp]),
    # 11. files
    "elm_model_save_buffer": (_I, [_vp, _vp, c_size_t, _szp]),
    "elm_model_save": (_I, [_vp, c_char_p]),
    "elm_model_load_buffer": (_I, [_vp, c_size_t, _vpp]),
    "elm_model_load": (_I, [c_char_p, _vpp]),
    "elm_model_set_meta": (_I, [_vp, c_char_p, c_char_p]),
    "elm_model_get_meta": (c_char_p, [_vp, c_char_p]),
    "elm_model_meta_count": (c_size_t, [_vp]),
    "elm_model_meta_key": (c_char_p, [_vp, c_size_t]),
    "elm_trainer_save_buffer": (_I, [_vp, _vp, c_size_t, _szp]),
    "elm_trainer_save": (_I, [_vp, c_char_p]),
    "elm_trainer_load_buffer": (_I, [_vp, _vp, c_size_t]),
    "elm_trainer_load": (_I, [_vp, c_char_p]),
    "elm_trainer_set_checkpoint": (_I, [_vp, c_char_p, c_uint64]),
    # 12. YAML and training configs
    "elm_config_from_yaml": (_I, [c_char_p, c_size_t, _vpp]),
    "elm_config_load_yaml": (_I, [c_char_p, _vpp]),
    "elm_config_to_yaml": (_I, [_vp, _vp, c_size_t, _szp]),
    "elm_config_save_yaml": (_I, [_vp, c_char_p]),
    "elm_param_type": (_I, [c_int, _ip]),
    "elm_param_value_name": (c_char_p, [c_int, c_int]),
    "elm_param_value_from_name": (_I, [c_int, c_char_p, _ip]),
    "elm_train_config_create": (_I, [_vpp]),
    "elm_train_config_free": (None, [_vp]),
    "elm_train_config_from_yaml": (_I, [c_char_p, c_size_t, _vpp]),
    "elm_train_config_load_yaml": (_I, [c_char_p, _vpp]),
    "elm_train_config_to_yaml": (_I, [_vp, _vp, c_size_t, _szp]),
    "elm_train_config_save_yaml": (_I, [_vp, c_char_p]),
    "elm_train_config_key": (_I, [c_size_t, _cpp, _ip]),
    "elm_train_config_set": (_I, [_vp, c_char_p, c_double]),
    "elm_train_config_get": (_I, [_vp, c_char_p, _dp]),
    "elm_train_config_set_string": (_I, [_vp, c_char_p, c_char_p]),
    "elm_train_config_get_string": (_I, [_vp, c_char_p, _cpp]),
    "elm_train_config_set_list": (_I, [_vp, c_char_p, _vp, c_size_t]),
    "elm_train_config_get_list": (_I, [_vp, c_char_p, _vp, c_size_t, _szp]),
    "elm_train_config_model": (_vp, [_vp]),
    "elm_train_config_build": (_I, [_vp, _vp, c_size_t, _vpp, _vpp, _vpp]),
    "elm_train_config_open_data": (_I, [_vp, c_char_p, _vpp, _vpp, _vpp]),
}


# ---------------------------------------------------------------------------
# Loading

_lock = threading.Lock()
_lib = None
_missing = ()
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def candidates():
    """The library paths or names :func:`lib` tries, in order, as a list of
    (where, path) pairs."""
    env = os.environ.get("ELM_LIBRARY")
    if env:
        return [("ELM_LIBRARY", env)]
    out = []
    for path in sorted(glob.glob(os.path.join(_PKG_DIR, "libelm.so*"))):
        out.append(("package directory", path))
    build = os.path.normpath(os.path.join(_PKG_DIR, "..", "..", "..", "build",
                                          "lib", "libelm.so"))
    if os.path.exists(build):
        out.append(("build tree", build))
    found = ctypes.util.find_library("elm")
    if found:
        out.append(("system (find_library)", found))
    out.append(("system", "libelm.so.%d" % EXPECTED_MAJOR))
    return out


def _search_report():
    env = os.environ.get("ELM_LIBRARY")
    if env:
        return "ELM_LIBRARY=%s" % env
    return ("ELM_LIBRARY (unset), %s/libelm.so*, %s, "
            "ctypes.util.find_library('elm'), libelm.so.%d" % (
                _PKG_DIR, os.path.normpath(os.path.join(
                    _PKG_DIR, "..", "..", "..", "build", "lib", "libelm.so")),
                EXPECTED_MAJOR))


def _declare(cdll):
    missing = []
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    return tuple(missing)


def load(path):
    """Load libelm from ``path`` (no caching, no search), declare every
    prototype and check the version. Returns the CDLL."""
    cdll = ctypes.CDLL(path)
    if not hasattr(cdll, "elm_version_number"):
        raise LibraryNotFound("%s is not libelm (no elm_version_number)" % path)
    missing = _declare(cdll)
    number = cdll.elm_version_number()
    major, minor = number // 10000, number // 100 % 100
    if major != EXPECTED_MAJOR:
        raise LibraryNotFound(
            "%s is libelm %d.%d.%d, but this package needs major version %d "
            "(libelm.so.%d)" % (path, major, minor, number % 100,
                                EXPECTED_MAJOR, EXPECTED_MAJOR))
    cdll._elm_missing = missing
    cdll._elm_path = path
    return cdll


def lib():
    """The loaded libelm (ctypes.CDLL), loaded on first use. Raises
    :class:`LibraryNotFound` listing every place tried."""
    global _lib, _missing
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for where, path in candidates():
            try:
                cdll = load(path)
            except OSError as exc:
                errors.append("  %s: %s: %s" % (where, path, exc))
                continue
            _missing = cdll._elm_missing
            _lib = cdll
            return _lib
        raise LibraryNotFound(
            "libelm could not be loaded. Looked in: %s.\n%s\nSet ELM_LIBRARY "
            "to the path of libelm.so (e.g. build/lib/libelm.so after "
            "`meson setup build && ninja -C build`)." % (
                _search_report(), "\n".join(errors)))


def library_path():
    """Path (or name) the loaded library came from."""
    return lib()._elm_path


def missing_symbols():
    """Functions of elm.h the loaded library lacks (an older minor version):
    calling them raises AttributeError."""
    lib()
    return _missing


def require(name):
    """The C function ``name``, or ElmError(ELM_E_UNSUPPORTED) naming the
    loaded library's version when it lacks it."""
    cdll = lib()
    if name in _missing:
        raise ElmError(Status.E_UNSUPPORTED, name,
                       "this libelm (%s, %s) has no %s" % (
                           version_string(), cdll._elm_path, name))
    return getattr(cdll, name)


def version():
    """(major, minor, patch) of the loaded library."""
    n = lib().elm_version_number()
    return n // 10000, n // 100 % 100, n % 100


def version_string():
    return lib().elm_version_string().decode()


def gemm_info():
    """The matrix-product backend in use (elm_gemm_info)."""
    return lib().elm_gemm_info().decode("utf-8", "replace")


def strerror(code):
    return lib().elm_strerror(int(code)).decode("utf-8", "replace")


def cstr(text, what="string"):
    """str/bytes/os.PathLike -> bytes for a ``const char *`` argument."""
    if isinstance(text, bytes):
        raw = text
    elif isinstance(text, str):
        raw = text.encode("utf-8")
    elif hasattr(text, "__fspath__"):
        raw = os.fsencode(text)
    else:
        raise TypeError("%s must be str, bytes or a path, not %s" % (
            what, type(text).__name__))
    if b"\0" in raw:
        raise ValueError("%s contains a NUL byte" % what)
    return raw


def path_arg(path):
    """A filesystem path (str, bytes, os.PathLike) as bytes."""
    return cstr(os.fspath(path), "path")
