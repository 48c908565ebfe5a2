"""Training: losses, metrics, optimizers, the tape, the trainer and
training configs (elm.h sections 6-8, 10-12; docs/training.md).

Shapes: outputs y (B, T, n_out) float32; target (B, T, n_target)
float32; labels (B,) int32 for ``ce_last`` and (B, T) for ``ce_all``;
lengths (B,) int64 (None: all T). Times are in milliseconds. Gradients are
float32 arrays laid out like the model's parameter buffer (n_params =
``ELM_SIZE_PARAMS`` floats, tensors in ``elm_model_param_info`` order).

Ownership. An :class:`Optimizer` keeps its model alive; a :class:`Trainer`
keeps its model, optimizer and loss alive. Closing an optimizer or a loss
first closes the trainers built on it, so no C object ever points to a
freed one.
"""

import collections
import ctypes
import math

from . import _buffers
from . import _capi
from ._capi import ElmError, check
from .core import Config, Handle, Model
from .data import Dataset, _DeferredInterrupt, _check_callback_errors, _shape

__all__ = ["Loss", "Optimizer", "Tape", "Trainer", "TrainConfig", "Progress",
           "accuracy", "roc_auc", "rmse", "neuronio_evaluate"]


def _lib():
    return _capi.lib()


def _model_handle(model):
    """The ``elm_model *`` of an elm.Model (an int address)."""
    if not isinstance(model, Model):
        raise TypeError("expected an elm.Model, got %s" % type(model).__name__)
    return model._h


def _model_size(handle, what):
    v = ctypes.c_size_t()
    check(_lib().elm_model_size(handle, what, ctypes.byref(v)), "elm_model_size")
    return v.value


def _enum(table, value, what):
    """An enum given by name (str) or value (int) -> int, via ``table``
    (name -> int)."""
    if isinstance(value, str):
        try:
            return int(table[value.lower()])
        except KeyError:
            raise ValueError("unknown %s %r (have %s)" % (
                what, value, ", ".join(sorted(table)))) from None
    return int(value)


def _name_of(table, value):
    for name, v in table.items():
        if int(v) == int(value):
            return name
    return int(value)


def _str(raw):
    return raw.decode("utf-8", "replace") if raw is not None else None


# ---------------------------------------------------------------------------
# Losses and metrics

LOSS_KINDS = {"ce_last": _capi.LossKind.CE_LAST, "ce_all": _capi.LossKind.CE_ALL,
              "neuronio": _capi.LossKind.NEURONIO, "mse": _capi.LossKind.MSE}


class Loss(Handle):
    """A loss with its gradient (elm.h section 7).

    ``kind``: "ce_last" (cross-entropy at each sample's last valid step,
    labels (B,)), "ce_all" (at every counted step, labels (B, T)),
    "neuronio" (w0 BCEWithLogits(y0, target0) + w1 MSE(y1, target1),
    target (B, T, 2), n_out 2) or "mse" (target (B, T, n_out)).
    ``burn_in``: steps t < burn_in carry no loss (not for ce_last).
    ``weights``: n_out per-output weights (class weights for the
    cross-entropies), None for the kind's default.
    """

    _free_fn = "elm_loss_free"

    def __init__(self, kind, n_out, burn_in=0, weights=None):
        out = ctypes.c_void_p()
        check(_lib().elm_loss_create(_enum(LOSS_KINDS, kind, "loss kind"),
                                     int(n_out), ctypes.byref(out)),
              "elm_loss_create")
        self._own(out.value)
        self._n_out = int(n_out)
        self._weights = None
        if burn_in:
            self.burn_in = burn_in
        if weights is not None:
            self.weights = weights

    @classmethod
    def _wrap(cls, handle, n_out, burn_in=0, weights=None):
        self = cls.__new__(cls)
        self._own(handle)
        self._n_out = int(n_out)
        self._weights = list(weights) if weights else None
        return self

    def __repr__(self):
        if self.closed:
            return "<elm.Loss (closed)>"
        return "<elm.Loss %s n_out=%d burn_in=%d>" % (self.kind, self._n_out,
                                                     self.burn_in)

    @property
    def kind(self):
        """The kind's name ("ce_last", "ce_all", "neuronio", "mse")."""
        return _str(_lib().elm_loss_kind_name(_lib().elm_loss_get_kind(self._h)))

    @property
    def n_out(self):
        return self._n_out

    @property
    def classification(self):
        """Whether the loss reads labels (ce_last, ce_all) or targets."""
        return self.kind in ("ce_last", "ce_all")

    @property
    def burn_in(self):
        """Steps at the start of each sequence that carry no loss."""
        v = ctypes.c_size_t()
        check(_lib().elm_loss_get_burn_in(self._h, ctypes.byref(v)), "elm_loss_get_burn_in")
        return v.value

    @burn_in.setter
    def burn_in(self, t0):
        check(_lib().elm_loss_set_burn_in(self._h, int(t0)),
              "elm_loss_set_burn_in")

    @property
    def weights(self):
        """The per-output (or class) weights set, or None for the default."""
        return None if self._weights is None else list(self._weights)

    @weights.setter
    def weights(self, w):
        wb = _buffers.as_input(w, "float32", (self._n_out,), "weights")
        check(_lib().elm_loss_set_weights(self._h, wb.ptr, wb.n),
              "elm_loss_set_weights")
        self._weights = [float(v) for v in _buffers.reshape(wb.obj, (wb.n,))]

    def compute(self, y, target=None, labels=None, lengths=None, grad=True,
                out=None):
        """(value, dy): the loss (a float) and dL/dy (B, T, n_out) float32
        (zeros where nothing counts), or None when ``grad`` is False.
        Classification kinds take ``labels``, the others ``target``.
        ``out``: an array to write dy into."""
        yb = _buffers.as_input(y, "float32", (None, None, self._n_out), "y")
        B, T, n_out = yb.shape
        tb = _buffers.as_input(target, "float32", (B, T, None), "target") \
            if target is not None else None
        lb = _labels(labels, B, T, self.kind == "ce_last") \
            if labels is not None else None
        nb = _buffers.as_input(lengths, "int64", (B,), "lengths") \
            if lengths is not None else None
        dy, db = None, None
        if grad:
            dy, db = _buffers.output(out, (B, T, n_out), "float32", "out",
                                     _buffers.like_input(y))
        value = ctypes.c_double()
        check(_lib().elm_loss_compute(self._h, yb.ptr, B, T,
                                      tb.ptr if tb else None,
                                      lb.ptr if lb else None,
                                      nb.ptr if nb else None,
                                      ctypes.byref(value), db.ptr if db else None),
              "elm_loss_compute")
        return value.value, dy

    __call__ = compute


def _labels(labels, B, T, last):
    """labels as an int32 Buf: (B,) when ``last`` (a (B, 1) array, as
    datasets give, is accepted), else (B, T)."""
    if last:
        shape = _shape(labels)
        if len(shape) == 2 and shape[1] == 1:
            labels = _buffers.reshape(labels, (shape[0],))
        return _buffers.as_input(labels, "int32", (B,), "labels")
    return _buffers.as_input(labels, "int32", (B, T), "labels")


def accuracy(y, labels, lengths=None, burn_in=0, last=None):
    """Fraction of counted steps whose argmax over n_out equals the label.
    y (B, T, n_out); labels (B,) scores each sample's last valid step
    (``last`` True), labels (B, T) every step from ``burn_in`` on."""
    yb = _buffers.as_input(y, "float32", (None, None, None), "y")
    B, T, n_out = yb.shape
    if last is None:
        shape = _shape(labels)
        last = len(shape) == 1 or (len(shape) == 2 and shape[1] == 1 and T != 1)
    lb = _labels(labels, B, T, last)
    nb = _buffers.as_input(lengths, "int64", (B,), "lengths") \
        if lengths is not None else None
    value = ctypes.c_double()
    check(_lib().elm_metric_accuracy(yb.ptr, B, T, n_out, lb.ptr,
                                     nb.ptr if nb else None, int(burn_in),
                                     1 if last else 0, ctypes.byref(value)),
          "elm_metric_accuracy")
    return value.value


def roc_auc(score, truth):
    """ROC AUC of ``score`` against binary ``truth`` (0/1), n pairs (any
    shape, flattened); ties count one half (scikit-learn's roc_auc_score)."""
    sb = _buffers.as_input(score, "float32", None, "score")
    tb = _buffers.as_input(truth, "float32", None, "truth")
    if sb.n != tb.n:
        raise ValueError("score has %d values, truth %d" % (sb.n, tb.n))
    value = ctypes.c_double()
    check(_lib().elm_metric_roc_auc(sb.ptr, tb.ptr, sb.n, ctypes.byref(value)),
          "elm_metric_roc_auc")
    return value.value


def rmse(a, b):
    """Root mean square of a - b over all elements (any equal shapes)."""
    ab = _buffers.as_input(a, "float32", None, "a")
    bb = _buffers.as_input(b, "float32", None, "b")
    if ab.n != bb.n:
        raise ValueError("a has %d values, b %d" % (ab.n, bb.n))
    value = ctypes.c_double()
    check(_lib().elm_metric_rmse(ab.ptr, bb.ptr, ab.n, ctypes.byref(value)),
          "elm_metric_rmse")
    return value.value


# ---------------------------------------------------------------------------
# Optimizers

OPTIMIZER_KINDS = {"sgd": _capi.OptimizerKind.SGD, "adam": _capi.OptimizerKind.ADAM,
                   "adamw": _capi.OptimizerKind.ADAMW,
                   "adamax": _capi.OptimizerKind.ADAMAX}
SCHEDULES = {"constant": _capi.Schedule.CONSTANT, "cosine": _capi.Schedule.COSINE}
OPTIM_SETTINGS = {name.lower(): key for name, key in _capi.OptimParam.__members__.items()}
_OPTIM_INT = {"total_steps", "warmup_steps"}


class Optimizer(Handle):
    """SGD, Adam, AdamW or Adamax over a model's parameters (elm.h section
    8), with PyTorch's update formulas.

    ``Optimizer(model, "adam", lr=1e-3, clip_norm=1.0)``. Settings (as
    keyword arguments, :meth:`set` or :meth:`get`): lr, momentum,
    dampening, nesterov (SGD); beta1, beta2, eps (Adam family);
    weight_decay, clip_norm, schedule ("constant" | "cosine"),
    total_steps, warmup_steps, min_lr. A setting the kind does not use
    raises ElmError (ELM_E_UNKNOWN_NAME). The optimizer keeps the model
    alive.
    """

    _free_fn = "elm_optimizer_free"

    def __init__(self, model, kind="adam", **settings):
        out = ctypes.c_void_p()
        check(_lib().elm_optimizer_create(_model_handle(model),
                                          _enum(OPTIMIZER_KINDS, kind,
                                                "optimizer kind"),
                                          ctypes.byref(out)),
              "elm_optimizer_create")
        self._own(out.value, model)
        self.model = model
        self._n_params = _model_size(_model_handle(model), _capi.Size.PARAMS)
        if settings:
            self.set(**settings)

    @classmethod
    def _wrap(cls, handle, model, kind=None):  # kind: read from libelm
        self = cls.__new__(cls)
        self._own(handle, model)
        self.model = model
        self._n_params = _model_size(_model_handle(model), _capi.Size.PARAMS)
        return self

    def __repr__(self):
        if self.closed:
            return "<elm.Optimizer (closed)>"
        return "<elm.Optimizer %s lr=%g steps=%d>" % (self.kind, self.lr, self.steps)

    @property
    def kind(self):
        """"sgd", "adam", "adamw" or "adamax"."""
        return _str(_lib().elm_optimizer_kind_name(_lib().elm_optimizer_get_kind(self._h)))

    @staticmethod
    def _key(name):
        try:
            return OPTIM_SETTINGS[name.lower()]
        except KeyError:
            raise ValueError("unknown optimizer setting %r (have %s)" % (
                name, ", ".join(OPTIM_SETTINGS))) from None

    def set(self, **settings):
        """Set settings by name: ``opt.set(lr=5e-3, schedule="cosine",
        total_steps=1000)``. Each failure raises ElmError, leaving that
        setting unchanged."""
        for name, value in settings.items():
            key = self._key(name)
            if key == _capi.OptimParam.SCHEDULE:
                value = _enum(SCHEDULES, value, "schedule")
            check(_lib().elm_optimizer_set(self._h, key, float(value)),
                  "elm_optimizer_set(%s)" % name)
        return self

    def get(self, name):
        """A setting's value: float, int (total_steps, warmup_steps), bool
        (nesterov) or str (schedule)."""
        key = self._key(name)
        v = ctypes.c_double()
        check(_lib().elm_optimizer_get(self._h, key, ctypes.byref(v)),
              "elm_optimizer_get(%s)" % name)
        if key == _capi.OptimParam.SCHEDULE:
            return _name_of(SCHEDULES, int(v.value))
        if key == _capi.OptimParam.NESTEROV:
            return bool(v.value)
        if name.lower() in _OPTIM_INT:
            return int(v.value)
        return v.value

    def settings(self):
        """Every setting this kind uses, as a dict."""
        out = {}
        for name, key in OPTIM_SETTINGS.items():
            v = ctypes.c_double()
            if _lib().elm_optimizer_get(self._h, key, ctypes.byref(v)) == 0:
                out[name] = self.get(name)
        return out

    def freeze(self, tensor, frozen=True):
        """Freeze (or, frozen=False, train) a tensor by libelm name or
        official alias ("readout.weight", "w_y.weight", "tau_m_proto")."""
        check(_lib().elm_optimizer_freeze(self._h, _capi.cstr(tensor, "tensor"),
                                          1 if frozen else 0),
              "elm_optimizer_freeze")

    def unfreeze(self, tensor):
        self.freeze(tensor, False)

    def is_frozen(self, tensor):
        v = ctypes.c_int()
        check(_lib().elm_optimizer_is_frozen(self._h, _capi.cstr(tensor, "tensor"),
                                             ctypes.byref(v)),
              "elm_optimizer_is_frozen")
        return bool(v.value)

    @property
    def n_params(self):
        """Length of a gradient array (the model's parameter buffer)."""
        return self._n_params

    def step(self, grad):
        """One update from ``grad`` (n_params float32; scaled in place when
        clipping applies, so pass a float32 array to see it). Returns the
        global L2 norm of the trained gradients before clipping."""
        gb = _buffers.as_input(grad, "float32", (self._n_params,), "grad")
        norm = ctypes.c_double()
        check(_lib().elm_optimizer_step(self._h, gb.ptr, ctypes.byref(norm)),
              "elm_optimizer_step")
        return norm.value

    @property
    def steps(self):
        """Steps taken so far."""
        return int(_lib().elm_optimizer_steps(self._h))

    @property
    def lr(self):
        """The learning rate the next step will use (after the schedule)."""
        return float(_lib().elm_optimizer_lr(self._h))

    def save_state(self):
        """The whole optimizer state (kind, settings, frozen set, step
        count, moments) as bytes."""
        size = ctypes.c_size_t()
        check(_lib().elm_optimizer_save_state(self._h, None, 0,
                                              ctypes.byref(size)),
              "elm_optimizer_save_state")
        buf = ctypes.create_string_buffer(size.value)
        check(_lib().elm_optimizer_save_state(self._h, buf, size.value,
                                              ctypes.byref(size)),
              "elm_optimizer_save_state")
        return buf.raw[:size.value]

    def load_state(self, data):
        """Restore a state from :meth:`save_state` (validated completely:
        nothing changes on failure)."""
        data = bytes(data)
        check(_lib().elm_optimizer_load_state(self._h, data, len(data)),
              "elm_optimizer_load_state")


# ---------------------------------------------------------------------------
# The tape

class Tape(Handle):
    """Training forward of B streams from the zero state, recorded for
    backpropagation through time (elm.h section 6).

    ``Tape(model, B, T_max, checkpoint=False, grad_tau=False)``:
    ``checkpoint`` keeps only segment starts (memory ~ sqrt(T), bit-identical
    gradients, a second forward); ``grad_tau`` also differentiates tau_s
    (v1) / tau_b (v2). The tape keeps the model alive; the model must not
    change between a forward and its backward.

    >>> y = tape.forward(x)               # x (B, T, n_in) -> y (B, T, n_out)
    >>> grad, dx = tape.backward(dy, want_dx=True)
    """

    _free_fn = "elm_tape_free"

    def __init__(self, model, B, T_max, checkpoint=False, grad_tau=False):
        flags = (_capi.TapeFlag.CHECKPOINT if checkpoint else 0) | \
            (_capi.TapeFlag.GRAD_TAU if grad_tau else 0)
        handle = _model_handle(model)
        out = ctypes.c_void_p()
        check(_lib().elm_tape_create(handle, int(B), int(T_max), int(flags),
                                     ctypes.byref(out)), "elm_tape_create")
        self._own(out.value, model)
        self.model = model
        self.B, self.T_max = int(B), int(T_max)
        self._n_in = _model_size(handle, _capi.Size.INPUT)
        self._n_out = _model_size(handle, _capi.Size.OUTPUT)
        self._n_params = _model_size(handle, _capi.Size.PARAMS)
        self._T = None  # T of the last recorded forward

    def set_threads(self, n):
        """Forward and backward on n threads (1 <= n <= B); the recorded
        forward is discarded."""
        check(_lib().elm_tape_set_threads(self._h, int(n)), "elm_tape_set_threads")

    @property
    def memory(self):
        """Bytes the tape allocated."""
        v = ctypes.c_size_t()
        check(_lib().elm_tape_memory(self._h, ctypes.byref(v)), "elm_tape_memory")
        return v.value

    @property
    def n_params(self):
        return self._n_params

    def new_grad(self, use_numpy=None):
        """A zeroed gradient array (n_params float32)."""
        return _buffers.zeros((self._n_params,), "float32", use_numpy)

    def forward(self, x, out=None):
        """x (B, T, n_in) -> y (B, T, n_out), 1 <= T <= T_max, recorded.
        The tape records what the backward needs: x may change afterwards."""
        xb = _buffers.as_input(x, "float32", (self.B, None, self._n_in), "x")
        T = xb.shape[1]
        y, yb = _buffers.output(out, (self.B, T, self._n_out), "float32", "out",
                                _buffers.like_input(x))
        self._T = None
        check(_lib().elm_tape_forward(self._h, xb.ptr, T, yb.ptr),
              "elm_tape_forward")
        self._T = T
        return y

    def forward_events(self, T, offsets, channels, values=None, out=None):
        """The recording forward from event input: row b * T + t of the CSR
        arrays (offsets (B*T + 1,)) is stream b at step t; values None
        means every event is 1. Returns y (B, T, n_out). A refused call
        keeps the last forward's record."""
        T = int(T)
        off, ch, val = _buffers.events(self.B * T, offsets, channels, values)
        y, yb = _buffers.output(out, (self.B, T, self._n_out), "float32", "out",
                                _buffers.like_input(offsets))
        check(_lib().elm_tape_forward_events(self._h, T, off.ptr, ch.ptr,
                                             val.ptr if val is not None else None, yb.ptr),
              "elm_tape_forward_events")
        self._T = T
        return y

    def backward(self, dy, grad=None, want_dx=False):
        """Backward through the last forward: dy (B, T, n_out) = dL/dy.
        Adds dL/dparams into ``grad`` (n_params float32; a new zeroed array
        when None) and returns (grad, dx), dx = dL/dx (B, T, n_in) when
        ``want_dx``, else None. May be called again for another dy."""
        if getattr(self, "_T", None) is None:
            raise RuntimeError("Tape.backward needs a forward first")
        T = self._T
        db = _buffers.as_input(dy, "float32", (self.B, T, self._n_out), "dy")
        if grad is None:
            grad = self.new_grad(_buffers.like_input(dy))
        gb = _buffers.as_output(grad, "float32", (self._n_params,), "grad")
        dx, xb = None, None
        if want_dx:
            dx, xb = _buffers.output(None, (self.B, T, self._n_in), "float32", "dx",
                                     _buffers.like_input(dy))
        check(_lib().elm_tape_backward(self._h, None, db.ptr, gb.ptr,
                                       xb.ptr if xb else None),
              "elm_tape_backward")
        return grad, dx


# ---------------------------------------------------------------------------
# The trainer

TRAIN_OPTIONS = {name.lower(): key for name, key in _capi.TrainOption.__members__.items()}
NONFINITE = {"stop": _capi.NonfinitePolicy.STOP, "skip": _capi.NonfinitePolicy.SKIP}
SELECT = {"val_loss": _capi.Metric.VAL_LOSS, "val_accuracy": _capi.Metric.VAL_ACCURACY,
          "val_auc": _capi.Metric.VAL_AUC}
METRICS = {name.lower(): key for name, key in _capi.Metric.__members__.items()}
_INT_METRICS = {"epoch", "step", "best_epoch", "skipped", "batch"}
_INT_OPTIONS = {"seed", "epochs", "patience", "max_batches"}

Progress = collections.namedtuple("Progress", "event epoch step loss metrics")
Progress.__doc__ = """What a fit() callback receives.

event: "step" (after each training step) or "epoch" (after each epoch's
validation); epoch: epochs completed; step: optimizer steps taken; loss:
the last step's loss ("step") or the epoch's mean training loss
("epoch"); metrics: every trainer metric by name (see Trainer.metric)."""


def _read_metrics(handle):
    out = {}
    v = ctypes.c_double()
    lib = _lib()
    for name, key in METRICS.items():
        check(lib.elm_trainer_metric(handle, key, ctypes.byref(v)),
              "elm_trainer_metric")
        out[name] = int(v.value) if name in _INT_METRICS else v.value
    return out


class Trainer(Handle):
    """The training loop (elm.h section 10): dropout, tape forward, loss,
    backward, optimizer step; epochs with validation, best-epoch restore,
    early stopping, checkpoints.

    ``Trainer(model, optimizer, loss, batch_size, T_max,
    tape_checkpointing=False, grad_tau=False, **options)``, options
    (also :meth:`set` / :meth:`get`): dropout (input dropout p in [0, 1)),
    eval_dropout (bool), seed (of the dropout), epochs (total epochs of
    :meth:`fit`), patience (0 = no early stopping), max_batches (per
    epoch, 0 = all), nonfinite ("stop" | "skip"), select ("val_loss" |
    "val_accuracy" | "val_auc"). The trainer keeps model, optimizer and
    loss alive.
    """

    _free_fn = "elm_trainer_free"

    def __init__(self, model, optimizer, loss, batch_size, T_max,
                 tape_checkpointing=False, grad_tau=False, **options):
        if not isinstance(optimizer, Optimizer) or not isinstance(loss, Loss):
            raise TypeError("Trainer(model, optimizer, loss, ...): expected an "
                            "elm.Optimizer and an elm.Loss")
        if optimizer.model is not model:
            raise ValueError("the optimizer belongs to another model")
        flags = (_capi.TapeFlag.CHECKPOINT if tape_checkpointing else 0) | \
            (_capi.TapeFlag.GRAD_TAU if grad_tau else 0)
        out = ctypes.c_void_p()
        check(_lib().elm_trainer_create(_model_handle(model), optimizer._h,
                                        loss._h, int(batch_size), int(T_max),
                                        int(flags), ctypes.byref(out)),
              "elm_trainer_create")
        self._setup(out, model, optimizer, loss, batch_size, T_max)
        if options:
            self.set(**options)

    def _setup(self, handle, model, optimizer, loss, batch_size, T_max):
        self._own(handle, optimizer)  # closing the optimizer or the model closes it
        loss._adopt(self)             # and so does closing the loss
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.batch_size, self.T_max = int(batch_size), int(T_max)
        mh = _model_handle(model)
        self._n_in = _model_size(mh, _capi.Size.INPUT)
        self.interrupted = False

    @classmethod
    def _wrap(cls, handle, model, optimizer, loss, batch_size, T_max):
        self = cls.__new__(cls)
        self._setup(handle, model, optimizer, loss, batch_size, T_max)
        return self

    def __repr__(self):
        if self.closed:
            return "<elm.Trainer (closed)>"
        return "<elm.Trainer B=%d T_max=%d epoch=%d step=%d>" % (
            self.batch_size, self.T_max, self.metric("epoch"), self.metric("step"))

    # -- options ----------------------------------------------------------

    @staticmethod
    def _key(name):
        try:
            return TRAIN_OPTIONS[name.lower()]
        except KeyError:
            raise ValueError("unknown trainer option %r (have %s)" % (
                name, ", ".join(TRAIN_OPTIONS))) from None

    def set(self, **options):
        """Set options by name: ``trainer.set(epochs=10, dropout=0.5)``."""
        for name, value in options.items():
            key = self._key(name)
            if key == _capi.TrainOption.NONFINITE:
                value = _enum(NONFINITE, value, "nonfinite policy")
            elif key == _capi.TrainOption.SELECT:
                value = _enum(SELECT, value, "selection metric")
            check(_lib().elm_trainer_set(self._h, key, float(value)),
                  "elm_trainer_set(%s)" % name)
        return self

    def get(self, name):
        """An option's value (float, int, bool or, for nonfinite and
        select, its name)."""
        key = self._key(name)
        v = ctypes.c_double()
        check(_lib().elm_trainer_get(self._h, key, ctypes.byref(v)),
              "elm_trainer_get(%s)" % name)
        if key == _capi.TrainOption.NONFINITE:
            return _name_of(NONFINITE, int(v.value))
        if key == _capi.TrainOption.SELECT:
            return _name_of(SELECT, int(v.value))
        if key == _capi.TrainOption.EVAL_DROPOUT:
            return bool(v.value)
        if name.lower() in _INT_OPTIONS:
            return int(v.value)
        return v.value

    def options(self):
        """Every option as a dict."""
        return {name: self.get(name) for name in TRAIN_OPTIONS}

    # -- metrics ----------------------------------------------------------

    def metric(self, name):
        """One metric: train_loss, val_loss, val_accuracy, val_auc,
        val_rmse (mV for NeuronIO), epoch, step, best_epoch (1-based, 0
        before any validation), best, skipped, last_loss, lr. NaN when not
        (yet) defined."""
        try:
            key = METRICS[name.lower()]
        except KeyError:
            raise ValueError("unknown metric %r (have %s)" % (
                name, ", ".join(METRICS))) from None
        v = ctypes.c_double()
        check(_lib().elm_trainer_metric(self._h, key, ctypes.byref(v)),
              "elm_trainer_metric")
        return int(v.value) if name.lower() in _INT_METRICS else v.value

    def metrics(self):
        """Every metric as a dict."""
        return _read_metrics(self._h)

    # -- steps, evaluation, fit --------------------------------------------

    def _batch_args(self, B, T, target, labels, lengths):
        """target, labels and lengths of a batch as buffers (or None)."""
        tb = _buffers.as_input(target, "float32", (B, T, None), "target") \
            if target is not None else None
        lb = _labels(labels, B, T, self.loss.kind == "ce_last") \
            if labels is not None else None
        nb = _buffers.as_input(lengths, "int64", (B,), "lengths") \
            if lengths is not None else None
        return tb, lb, nb

    def step(self, x, target=None, labels=None, lengths=None):
        """One training step on a batch: x (B, T, n_in) with B = batch_size
        and T <= T_max; target or labels as the loss wants; lengths (B,) or
        None. Returns the batch loss (x is not modified)."""
        B = self.batch_size
        xb = _buffers.as_input(x, "float32", (B, None, self._n_in), "x")
        T = xb.shape[1]
        tb, lb, nb = self._batch_args(B, T, target, labels, lengths)
        loss = ctypes.c_double()
        check(_lib().elm_trainer_step(self._h, xb.ptr, T,
                                      tb.ptr if tb else None,
                                      lb.ptr if lb else None,
                                      nb.ptr if nb else None, ctypes.byref(loss)),
              "elm_trainer_step")
        return loss.value

    def step_events(self, T, offsets, channels, values=None, target=None, labels=None,
                    lengths=None):
        """One training step on a batch given as events: row b * T + t of
        the CSR arrays is stream b at step t (see Tape.forward_events).
        Dropout draws per event in row and channel order, so events with
        increasing channels train exactly as the dense batch. Returns the
        batch loss."""
        B, T = self.batch_size, int(T)
        off, ch, val = _buffers.events(B * T, offsets, channels, values)
        tb, lb, nb = self._batch_args(B, T, target, labels, lengths)
        loss = ctypes.c_double()
        check(_lib().elm_trainer_step_events(self._h, T, off.ptr, ch.ptr,
                                             val.ptr if val is not None else None,
                                             tb.ptr if tb else None,
                                             lb.ptr if lb else None,
                                             nb.ptr if nb else None, ctypes.byref(loss)),
              "elm_trainer_step_events")
        return loss.value

    def step_batch(self, batch):
        """:meth:`step` on an :class:`elm.data.Batch` (from Dataset.next)."""
        return self.step(batch.x, batch.target, batch.labels, batch.lengths)

    def evaluate(self, dataset):
        """Loss and metrics of the model on a whole dataset (epoch-0
        order, no update). Returns {"val_loss", "val_accuracy", "val_auc",
        "val_rmse"} (NaN where the loss kind has no such metric)."""
        interrupt = _DeferredInterrupt()
        with interrupt:
            rc = _lib().elm_trainer_evaluate(self._h, dataset._h)
        if rc != 0:
            try:
                check(rc, "elm_trainer_evaluate")
            except ElmError as err:
                _check_callback_errors([dataset], err)
        interrupt.raise_pending()
        return {name: self.metric(name)
                for name in ("val_loss", "val_accuracy", "val_auc", "val_rmse")}

    def fit(self, train, val=None, callback=None, epochs=None):
        """Train over ``train`` until ``epochs`` epochs are complete in total
        (default: the ``epochs`` option; set it with epochs=), validating on
        ``val`` after each epoch, then restore the best epoch's parameters.

        ``callback(progress)`` gets a :class:`Progress` after every step
        and every epoch; returning True interrupts the run: the model keeps
        its current parameters, a checkpoint is saved if one is set, and
        the next fit() continues exactly where it stopped. An exception
        raised by the callback (KeyboardInterrupt included) also interrupts
        the run cleanly and is re-raised when fit returns; so is Ctrl-C
        during fit (on the main thread). Returns :meth:`metrics`;
        ``self.interrupted`` tells whether the run was interrupted.
        """
        if epochs is not None:
            self.set(epochs=epochs)
        interrupt = _DeferredInterrupt()
        raised, stopped = [], []

        def progress(user, trainer, event):
            try:
                if interrupt.pending:
                    return 1
                if callback is None:
                    return 0
                metrics = _read_metrics(ctypes.c_void_p(trainer))
                ev = "step" if event == _capi.TrainEvent.STEP else "epoch"
                loss = metrics["last_loss"] if ev == "step" else metrics["train_loss"]
                if callback(Progress(ev, metrics["epoch"], metrics["step"], loss,
                                     metrics)):
                    stopped.append(True)
                    return 1
                return 0
            except BaseException as exc:  # noqa: B902 - must not reach C
                raised.append(exc)
                return 1

        cb = _capi.PROGRESS_FN(progress)
        self.interrupted = False
        with interrupt:
            rc = _lib().elm_trainer_fit(self._h, train._h,
                                        val._h if val is not None else None,
                                        cb, None)
        self.interrupted = bool(raised or stopped or interrupt.pending)
        if rc != 0:
            try:
                check(rc, "elm_trainer_fit")
            except ElmError as err:
                if raised:
                    raise raised[0] from err
                _check_callback_errors([train, val], err)
        if raised:
            raise raised[0]
        interrupt.raise_pending()
        return self.metrics()

    # -- checkpoints --------------------------------------------------------

    def save(self, path):
        """Save a training checkpoint (model, optimizer state, progress) to
        ``path`` (atomically)."""
        check(_lib().elm_trainer_save(self._h, _capi.path_arg(path)),
              "elm_trainer_save")

    def load(self, path):
        """Load a checkpoint saved by a trainer built the same way; the next
        :meth:`fit` continues the saved run exactly."""
        check(_lib().elm_trainer_load(self._h, _capi.path_arg(path)),
              "elm_trainer_load")

    def save_buffer(self):
        """The checkpoint as bytes."""
        size = ctypes.c_size_t()
        check(_lib().elm_trainer_save_buffer(self._h, None, 0, ctypes.byref(size)),
              "elm_trainer_save_buffer")
        buf = ctypes.create_string_buffer(size.value)
        check(_lib().elm_trainer_save_buffer(self._h, buf, size.value,
                                             ctypes.byref(size)),
              "elm_trainer_save_buffer")
        return buf.raw[:size.value]

    def load_buffer(self, data):
        data = bytes(data)
        check(_lib().elm_trainer_load_buffer(self._h, data, len(data)),
              "elm_trainer_load_buffer")

    def set_checkpoint(self, path, every=0):
        """Let fit() save a checkpoint to ``path`` after every epoch and,
        when ``every`` > 0, every ``every`` steps (and when interrupted).
        None turns it off."""
        check(_lib().elm_trainer_set_checkpoint(
            self._h, _capi.path_arg(path) if path is not None else None,
            int(every)), "elm_trainer_set_checkpoint")


# ---------------------------------------------------------------------------
# NeuronIO evaluation

NEURONIO_MODES = {"windows": _capi.NeuronioMode.WINDOWS,
                  "continuous": _capi.NeuronioMode.CONTINUOUS}


def neuronio_evaluate(model, path, mode="windows"):
    """The NeuronIO evaluation protocol (model.md section 5) of a model
    (n_in 1278, n_out 2) on a converted file: a dict of auc,
    tp_at_fp_0025, pauc_at_fp_0025, tp_at_fp_01, pauc_at_fp_01, soma_rmse
    (mV), soma_mae (mV), soma_explained_variance (percent), n_simulations,
    n_spikes. ``mode``: "windows" (the official 500 ms windows) or
    "continuous"."""
    out = _capi.NeuronioMetrics()
    check(_lib().elm_neuronio_evaluate(_model_handle(model), _capi.path_arg(path),
                                       _enum(NEURONIO_MODES, mode, "mode"),
                                       ctypes.byref(out)),
          "elm_neuronio_evaluate")
    return out.as_dict()


# ---------------------------------------------------------------------------
# Training configs

VALUE_TYPES = {_capi.ValueType.NUMBER: "number", _capi.ValueType.INTEGER: "integer",
               _capi.ValueType.BOOL: "bool", _capi.ValueType.ENUM: "enum",
               _capi.ValueType.STRING: "string", _capi.ValueType.LIST: "list"}
_KEYS = None


def train_config_keys():
    """Every training-config key in order, as a dict {"section.name": type}
    with type one of "number", "integer", "bool", "enum", "string", "list"
    (docs/training.md lists them with their defaults and bounds)."""
    global _KEYS
    if _KEYS is None:
        keys = {}
        name, vtype = ctypes.c_char_p(), ctypes.c_int()
        i = 0
        while _lib().elm_train_config_key(i, ctypes.byref(name), ctypes.byref(vtype)) == 0:
            keys[_str(name.value)] = VALUE_TYPES[_capi.ValueType(vtype.value)]
            i += 1
        _KEYS = keys
    return dict(_KEYS)


class _ModelSection(Config):
    """The model section of a TrainConfig: a Config borrowed from it (not
    freed by close; closing the TrainConfig closes this view)."""

    def close(self):
        if not self._ptr:
            return
        self._ptr = None
        parent, self._parent = self._parent, None
        if parent is not None and parent._children is not None:
            parent._children.pop(id(self), None)


def _read_text(call, what):
    size = ctypes.c_size_t()
    check(call(None, 0, ctypes.byref(size)), what)
    buf = ctypes.create_string_buffer(size.value)
    check(call(buf, size.value, ctypes.byref(size)), what)
    return buf.value.decode("utf-8")


class TrainConfig(Handle):
    """A whole training run described by one YAML document (elm.h section
    12; docs/training.md "Training configs"): sections model, data,
    optimizer, loss and training.

    ``TrainConfig()`` holds the defaults; :meth:`load` / :meth:`from_yaml`
    read YAML (errors give file, line and column). Values by
    "section.name" key: ``tc["optimizer.lr"] = 5e-3``, ``tc.get(key)``,
    ``tc.set(key, value)``. Types: numbers -> float, integers -> int,
    booleans -> bool, enums -> their name (set by name or C value),
    strings -> str, lists (loss.weights) -> list of float.
    ``tc.model_config`` is the model section as an :class:`elm.Config`
    (a live view). :meth:`build` makes the optimizer, loss and trainer,
    :meth:`open_data` the datasets.
    """

    _free_fn = "elm_train_config_free"

    def __init__(self, values=None, _handle=None):
        """Defaults, then ``values`` ({"section.name": value}) set in
        order."""
        if _handle is None:
            out = ctypes.c_void_p()
            check(_lib().elm_train_config_create(ctypes.byref(out)),
                  "elm_train_config_create")
            _handle = out.value
        self._own(_handle)
        for key, value in dict(values or {}).items():
            self.set(key, value)

    @classmethod
    def from_yaml(cls, text):
        """Parse YAML text (str or bytes)."""
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = ctypes.c_void_p()
        check(_lib().elm_train_config_from_yaml(raw, len(raw), ctypes.byref(out)),
              "elm_train_config_from_yaml")
        return cls(_handle=out.value)

    @classmethod
    def load(cls, path):
        """Read a YAML file."""
        out = ctypes.c_void_p()
        check(_lib().elm_train_config_load_yaml(_capi.path_arg(path), ctypes.byref(out)),
              "elm_train_config_load_yaml")
        return cls(_handle=out.value)

    load_yaml = load

    def to_yaml(self):
        """The config as YAML text (every key, fixed order)."""
        h = self._h
        return _read_text(lambda dst, cap, size: _lib().elm_train_config_to_yaml(
            h, dst, cap, size), "elm_train_config_to_yaml")

    def save(self, path):
        """Write the YAML to ``path`` (atomically)."""
        check(_lib().elm_train_config_save_yaml(self._h, _capi.path_arg(path)),
              "elm_train_config_save_yaml")

    save_yaml = save

    def __repr__(self):
        if self.closed:
            return "<elm.TrainConfig (closed)>"
        return "<elm.TrainConfig source=%r optimizer=%s loss=%s>" % (
            self.get("data.source"), self.get("optimizer.kind"), self.get("loss.kind"))

    # -- typed access -----------------------------------------------------

    @staticmethod
    def keys():
        """Every key, in order ("model.formulation", ..., "training.*")."""
        return list(train_config_keys())

    @staticmethod
    def key_type(key):
        try:
            return train_config_keys()[key]
        except KeyError:
            raise KeyError("unknown training-config key %r" % key) from None

    def __contains__(self, key):
        return key in train_config_keys()

    def __iter__(self):
        return iter(self.keys())

    def get(self, key):
        """The value of ``key`` (see the class docstring for its type)."""
        kind = self.key_type(key)
        h, ck, lib = self._h, _capi.cstr(key, "key"), _lib()
        if kind in ("string", "enum"):
            v = ctypes.c_char_p()
            check(lib.elm_train_config_get_string(h, ck, ctypes.byref(v)),
                  "elm_train_config_get_string(%s)" % key)
            return _str(v.value) or ""
        if kind == "list":
            n = ctypes.c_size_t()
            check(lib.elm_train_config_get_list(h, ck, None, 0, ctypes.byref(n)),
                  "elm_train_config_get_list(%s)" % key)
            arr = (ctypes.c_double * max(n.value, 1))()
            check(lib.elm_train_config_get_list(h, ck, arr, n.value, ctypes.byref(n)),
                  "elm_train_config_get_list(%s)" % key)
            return [arr[i] for i in range(n.value)]
        v = ctypes.c_double()
        check(lib.elm_train_config_get(h, ck, ctypes.byref(v)),
              "elm_train_config_get(%s)" % key)
        if kind == "bool":
            return bool(v.value)
        if kind == "integer":
            return int(v.value) if math.isfinite(v.value) else v.value
        return v.value

    def set(self, key, value):
        """Set ``key``; a value of the wrong type or out of bounds raises
        ElmError (ELM_E_INVALID) and changes nothing."""
        kind = self.key_type(key)
        h, ck, lib = self._h, _capi.cstr(key, "key"), _lib()
        if kind == "string" or (kind == "enum" and isinstance(value, str)):
            check(lib.elm_train_config_set_string(h, ck, _capi.cstr(value, key)),
                  "elm_train_config_set_string(%s)" % key)
        elif kind == "list":
            values = [float(v) for v in value]
            arr = (ctypes.c_double * max(len(values), 1))(*values)
            check(lib.elm_train_config_set_list(h, ck, arr, len(values)),
                  "elm_train_config_set_list(%s)" % key)
        else:
            check(lib.elm_train_config_set(h, ck, float(value)),
                  "elm_train_config_set(%s)" % key)

    def __getitem__(self, key):
        return self.get(key)

    def __setitem__(self, key, value):
        self.set(key, value)

    def to_dict(self):
        """{key: value} for every key. Optimizer keys the kind does not use
        are left out."""
        out = {}
        for key in self.keys():
            try:
                out[key] = self.get(key)
            except ElmError as err:
                if err.code != _capi.Status.E_UNKNOWN_NAME:
                    raise
        return out

    @property
    def model_config(self):
        """The model section as an :class:`elm.Config`, borrowed: changes
        made through it change this TrainConfig."""
        ptr = _lib().elm_train_config_model(self._h)
        view = _ModelSection.__new__(_ModelSection)
        view._own(ptr, self)
        return view

    # -- building -----------------------------------------------------------

    def build(self, model, T_max):
        """(optimizer, loss, trainer) for ``model`` (which must match the
        model section) and sequences of at most ``T_max`` steps; the
        trainer has batch size data.batch_size, every training.* option
        and the checkpoint path."""
        opt, loss, tr = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        check(_lib().elm_train_config_build(self._h, _model_handle(model), int(T_max),
                                            ctypes.byref(opt), ctypes.byref(loss),
                                            ctypes.byref(tr)),
              "elm_train_config_build")
        # wrap at once so that a failure below still frees all three
        optimizer = Optimizer._wrap(opt.value, model, self.get("optimizer.kind"))
        weights = self.get("loss.weights")
        loss_obj = Loss._wrap(loss.value, model.num_output, self.get("loss.burn_in"),
                              weights or None)
        trainer = Trainer._wrap(tr.value, model, optimizer, loss_obj,
                                self.get("data.batch_size"), T_max)
        return optimizer, loss_obj, trainer

    def open_data(self, base_dir=None):
        """(train, val, test) datasets of the data section; paths relative
        to ``base_dir`` (None: the working directory). val is None unless
        data.val_fraction > 0, test None unless data.test is set. The
        training set has data.shuffle, data.seed, data.drop_last and
        data.prefetch; val and test are read in order, padded."""
        train, val, test = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        check(_lib().elm_train_config_open_data(
            self._h, _capi.path_arg(base_dir) if base_dir is not None else None,
            ctypes.byref(train), ctypes.byref(val), ctypes.byref(test)),
            "elm_train_config_open_data")
        seed, prefetch = self.get("data.seed"), self.get("data.prefetch") > 0
        source = self.get("data.source")
        train_opts = {"shuffle": self.get("data.shuffle"), "seed": seed,
                      "drop_last": self.get("data.drop_last"), "prefetch": prefetch}
        eval_opts = {"shuffle": False, "seed": seed, "drop_last": False,
                     "prefetch": prefetch}
        return (Dataset(train.value, what=source + "[train]", options=train_opts),
                Dataset(val.value, what=source + "[val]", options=eval_opts)
                if val.value else None,
                Dataset(test.value, what=source + "[test]", options=eval_opts)
                if test.value else None)
