"""Import official ELM checkpoints into .elm files, and export .elm models.

Import (``official``): a state dict saved by the official PyTorch code
(AaronSpieler/elmneuron, ``torch.save(model.state_dict(), ...)``) plus its
``model_config.json`` (the keyword arguments of ``ELM(...)``) become one
.elm file. The formulation is read from the state dict: ``tau_s`` is the v1
ELM (expressive_leaky_memory_neuron.py), ``tau_b`` the v2 "branch" ELM
(expressive_leaky_memory_neuron_v2.py). Official names map to libelm's:

====================================  ==========================
official state dict                   libelm
====================================  ==========================
``_proto_w_s``                        ``w_s_proto``
``tau_s`` / ``tau_b``                 ``tau_s`` / ``tau_b``
``_proto_tau_m``                      ``tau_m_proto``
``mlp.network.<2i>.weight``/``.bias``   ``mlp.<i>.weight``/``.bias``
``w_y.weight`` / ``w_y.bias``         ``readout.weight``/``.bias``
``input_to_synapse_indices``,         the ROUT section (routing
``valid_indices_mask``                table and mask)
====================================  ==========================

Keys missing from the json take the defaults of the official ``ELM``
constructor. ``mlp_num_layers`` and ``mlp_hidden_size`` are read from the
weights and must agree with the json (or its defaults), as the official
``load_state_dict`` would demand. Incomplete, mis-shaped or unknown tensors
are refused, naming the tensor. The .elm metadata records ``source``
(checkpoint file name), ``source_sha256``, ``official_config`` (the json
text), ``formulation`` and, when the official files sit next to the
checkpoint, ``published_metrics`` (eval_results.json) and
``published_param_count`` (model_stats.json).

Export (``export``):

* ``.pt``: the official state dict (names, dtypes and order of the official
  model, CPU tensors), loadable with ``torch.load`` and
  ``ELM.load_state_dict``, plus the official ``model_config.json`` written
  beside it as ``<name>.model_config.json`` (``--config-out`` to choose),
  which is also where ``official`` looks first, so an export imports back.
* ``.npz``: one ``<libelm name>.npy`` (float32, NPY 1.0) per tensor,
  ``routing.idx.npy`` (int64) and ``routing.mask.npy`` (uint8) when the
  model has routing, and two JSON members inside the same archive:
  ``config.json`` (the 17 hyper-parameters by libelm name, enumerations as
  their C values, as in the CONF section) and ``metadata.json``. With
  numpy, ``np.load(path)["config.json"]`` gives the JSON bytes.

Command line::

    python3 -m elm.convert official MODEL.pt [--config model_config.json] -o OUT.elm
    python3 -m elm.convert export MODEL.elm -o OUT.pt|OUT.npz [--config-out CFG.json]
    python3 -m elm.convert info MODEL.elm

Only the Python standard library is used: torch and numpy are not needed.
"""

import argparse
import array
import collections
import hashlib
import io
import json
import os
import re
import struct
import sys
import zipfile

from . import elmfile, torchzip

__all__ = ["ConvertError", "official_to_model", "official_to_elm", "model_to_official",
           "elm_to_pt", "elm_to_npz", "npy_bytes", "main"]


class ConvertError(ValueError):
    """A checkpoint or config that cannot be converted; the message says why."""


# Keyword arguments of the official ELM constructors and their defaults
# (src/expressive_leaky_memory_neuron.py; v2 names tau_b_value instead of
# tau_s_value). num_input and num_output have none.
_OFFICIAL_DEFAULTS = collections.OrderedDict([
    ("num_input", None),
    ("num_output", None),
    ("num_memory", 100),
    ("lambda_value", 5.0),
    ("mlp_num_layers", 1),
    ("mlp_hidden_size", None),      # None: 2 * num_memory
    ("mlp_activation", "relu"),
    ("tau_s_value", 5.0),           # v1; v2: tau_b_value
    ("memory_tau_min", 1.0),
    ("memory_tau_max", 1000.0),
    ("learn_memory_tau", False),
    ("w_s_value", 0.5),
    ("num_branch", None),           # None: num_input
    ("num_synapse_per_branch", 1),
    ("input_to_synapse_routing", None),
    ("delta_t", 1.0),
])
_ACTIVATIONS = {"relu": 0, "silu": 1}
_ROUTINGS = {None: 0, "random_routing": 1, "neuronio_routing": 2}
_INT_KEYS = ("num_input", "num_output", "num_memory", "mlp_num_layers", "mlp_hidden_size",
             "num_branch", "num_synapse_per_branch")
_FLOAT_KEYS = ("lambda_value", "tau_s_value", "tau_b_value", "memory_tau_min",
               "memory_tau_max", "w_s_value", "delta_t")

_MLP_KEY = re.compile(r"^mlp\.network\.(\d+)\.(weight|bias)$")
_ROUTING_KEYS = ("input_to_synapse_indices", "valid_indices_mask")
_FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
_INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8")


def _official_name(libelm_name):
    """libelm tensor name -> official state-dict name."""
    fixed = {"w_s_proto": "_proto_w_s", "tau_s": "tau_s", "tau_b": "tau_b",
             "tau_m_proto": "_proto_tau_m", "readout.weight": "w_y.weight",
             "readout.bias": "w_y.bias"}
    if libelm_name in fixed:
        return fixed[libelm_name]
    _, i, kind = libelm_name.split(".")
    return "mlp.network.%d.%s" % (2 * int(i), kind)


def _config_value(key, value):
    """An official json value checked for its key's type."""
    if key in _INT_KEYS:
        if value is None and key in ("mlp_hidden_size", "num_branch"):
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConvertError("model config: %s must be an integer, got %r" % (key, value))
        return value
    if key in _FLOAT_KEYS:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConvertError("model config: %s must be a number, got %r" % (key, value))
        return float(value)
    if key == "learn_memory_tau":
        if value not in (True, False, 0, 1) or isinstance(value, float):
            raise ConvertError("model config: learn_memory_tau must be true or false, got %r"
                               % (value,))
        return bool(value)
    if key == "mlp_activation":
        if value not in _ACTIVATIONS:
            raise ConvertError("model config: mlp_activation must be one of %s, got %r"
                               % (", ".join(sorted(_ACTIVATIONS)), value))
        return value
    if key == "input_to_synapse_routing":
        if value not in _ROUTINGS:
            raise ConvertError("model config: input_to_synapse_routing must be null, "
                               "\"random_routing\" or \"neuronio_routing\", got %r" % (value,))
        return value
    raise AssertionError(key)


def _official_config(cfg, formulation):
    """Official json dict -> complete official kwargs (defaults filled)."""
    if not isinstance(cfg, dict):
        raise ConvertError("model config: expected a JSON object, got %s" % type(cfg).__name__)
    tau_key = "tau_s_value" if formulation == 1 else "tau_b_value"
    other_tau = "tau_b_value" if formulation == 1 else "tau_s_value"
    out = collections.OrderedDict()
    for key, default in _OFFICIAL_DEFAULTS.items():
        out[tau_key if key == "tau_s_value" else key] = default
    for key, value in cfg.items():
        if key == other_tau:
            raise ConvertError(
                "model config: %s belongs to the %s ELM, but the state dict is a %s ELM "
                "(it has '%s')" % (key, "v2" if formulation == 1 else "v1",
                                   "v1" if formulation == 1 else "v2",
                                   "tau_s" if formulation == 1 else "tau_b"))
        if key not in out:
            raise ConvertError("model config: unknown key '%s' (the official ELM takes %s)"
                               % (key, ", ".join(out)))
        out[key] = _config_value(key, value)
    for key in ("num_input", "num_output"):
        if out[key] is None:
            raise ConvertError("model config: %s is required" % key)
    return out


def _float_values(name, t):
    if t.dtype not in _FLOAT_DTYPES:
        raise ConvertError("tensor '%s' has dtype %s; a floating-point tensor is expected"
                           % (name, t.dtype))
    return t.values


def _int_values(name, t, allow_bool):
    ok = _INT_DTYPES + (("bool",) if allow_bool else ())
    if t.dtype not in ok:
        raise ConvertError("tensor '%s' has dtype %s; an integer%s tensor is expected"
                           % (name, t.dtype, " or bool" if allow_bool else ""))
    return [int(v) for v in t.values]


def _shape_str(shape):
    return "(%d,)" % shape[0] if len(shape) == 1 else "(" + ", ".join(str(s) for s in shape) + ")"


def _shape_hint(name, config):
    """Which hyper-parameters give a tensor its shape, for error messages."""
    c = config
    hints = {
        "w_s_proto": "num_branch * num_synapse_per_branch = %d * %d"
                     % (c["num_branch"], c["num_synapse_per_branch"]),
        "tau_m_proto": "num_memory = %d" % c["num_memory"],
        "readout.weight": "num_output = %d, num_memory = %d" % (c["num_output"],
                                                                 c["num_memory"]),
        "readout.bias": "num_output = %d" % c["num_output"],
        "tau_b": "num_branch = %d" % c["num_branch"],
    }
    hints["tau_s"] = hints["w_s_proto"]
    if name.startswith("mlp."):
        return "num_branch = %d, num_memory = %d, mlp_hidden_size = %d" % (
            c["num_branch"], c["num_memory"], c["mlp_hidden_size"])
    return hints[name]


def official_to_model(state_dict, official_cfg, metadata=None):
    """Official state dict (name -> torchzip.Tensor) and config dict -> ElmModel.

    Raises ConvertError naming the offending tensor or key.
    """
    has_s, has_b = "tau_s" in state_dict, "tau_b" in state_dict
    if has_s and has_b:
        raise ConvertError("the state dict has both 'tau_s' (v1) and 'tau_b' (v2)")
    if not has_s and not has_b:
        raise ConvertError("missing tensor 'tau_s' (v1 ELM) or 'tau_b' (v2 ELM): the state "
                           "dict is not an official ELM's")
    formulation = 1 if has_s else 2
    off = _official_config(official_cfg, formulation)

    # The MLP's linear layers sit at even indices of mlp.network (odd ones are
    # the activations, which have no parameters).
    layers = collections.defaultdict(set)
    for key in state_dict:
        m = _MLP_KEY.match(key)
        if m:
            if int(m.group(1)) % 2:
                raise ConvertError("unknown tensor '%s' (the MLP's linear layers are at even "
                                   "indices)" % key)
            layers[int(m.group(1)) // 2].add(m.group(2))
    if not layers:
        raise ConvertError("missing tensor 'mlp.network.0.weight'")
    L, L_cfg = max(layers), off["mlp_num_layers"]
    complete = [i for i in range(L + 1) if layers.get(i) == {"weight", "bias"}]
    if L > L_cfg and len(complete) != L + 1 and all(i in complete for i in range(L_cfg + 1)):
        # The config's MLP is all there; what lies beyond it is stray.
        extra = sorted(k for k in state_dict if _MLP_KEY.match(k)
                       and int(_MLP_KEY.match(k).group(1)) > 2 * L_cfg)
        raise ConvertError("unknown tensor%s %s (mlp_num_layers = %d: the MLP ends at "
                           "mlp.network.%d)" % ("s" if len(extra) > 1 else "",
                                                ", ".join("'%s'" % k for k in extra), L_cfg,
                                                2 * L_cfg))
    for i in range(L + 1):
        for kind in ("weight", "bias"):
            if kind not in layers.get(i, ()):
                raise ConvertError("missing tensor 'mlp.network.%d.%s' (the state dict has MLP "
                                   "layers up to mlp.network.%d)" % (2 * i, kind, 2 * L))
    if L_cfg != L:
        raise ConvertError("the weights have %d hidden MLP layers (mlp.network.0 .. %d), the "
                           "model config says mlp_num_layers = %d" % (L, 2 * L, L_cfg))
    want_H = off["mlp_hidden_size"] or 2 * off["num_memory"]
    if L >= 1:
        w0 = state_dict["mlp.network.0.weight"]
        if len(w0.shape) != 2:
            raise ConvertError("tensor 'mlp.network.0.weight' must be 2-D, got shape %s"
                               % _shape_str(w0.shape))
        H = w0.shape[0]
        if H != want_H:
            raise ConvertError(
                "tensor 'mlp.network.0.weight' has %d rows (mlp_hidden_size), the model config "
                "gives %d%s" % (H, want_H, "" if off["mlp_hidden_size"] else
                                " (2 * num_memory, its default)"))
    else:
        H = want_H  # unused without hidden layers; kept as the config gives it

    config = collections.OrderedDict([
        ("formulation", formulation),
        ("num_input", off["num_input"]),
        ("num_output", off["num_output"]),
        ("num_memory", off["num_memory"]),
        ("lambda_value", off["lambda_value"]),
        ("mlp_num_layers", L),
        ("mlp_hidden_size", H),
        ("mlp_activation", _ACTIVATIONS[off["mlp_activation"]]),
        ("tau_s_value", off["tau_s_value" if formulation == 1 else "tau_b_value"]),
        ("memory_tau_min", off["memory_tau_min"]),
        ("memory_tau_max", off["memory_tau_max"]),
        ("learn_memory_tau", int(off["learn_memory_tau"])),
        ("w_s_value", off["w_s_value"]),
        ("num_branch", off["num_branch"] if off["num_branch"] is not None
         else off["num_input"]),
        ("num_synapse_per_branch", off["num_synapse_per_branch"]),
        ("input_to_synapse_routing", _ROUTINGS[off["input_to_synapse_routing"]]),
        ("delta_t", off["delta_t"]),
    ])
    try:
        config = elmfile.resolve_config(config, "model config")
    except elmfile.ElmFileError as e:
        raise ConvertError(str(e)) from None

    layout = elmfile.tensor_layout(config)
    known = {_official_name(n) for n, _ in layout} | set(_ROUTING_KEYS)
    unknown = [k for k in state_dict if k not in known]
    if unknown:
        raise ConvertError("unknown tensor%s %s in the state dict (not part of this ELM)"
                           % ("s" if len(unknown) > 1 else "",
                              ", ".join("'%s'" % k for k in unknown)))
    tensors = collections.OrderedDict()
    for name, shape in layout:
        oname = _official_name(name)
        if oname not in state_dict:
            raise ConvertError("missing tensor '%s' %s" % (oname, _shape_str(shape)))
        t = state_dict[oname]
        if tuple(t.shape) != shape:
            raise ConvertError("tensor '%s' has shape %s, the model config implies %s (%s)"
                               % (oname, _shape_str(t.shape), _shape_str(shape),
                                  _shape_hint(name, config)))
        values = _float_values(oname, t)
        try:
            elmfile.check_tensor_values(name, values, "state dict", oname)
        except elmfile.ElmFileError as e:
            raise ConvertError(str(e)) from None
        tensors[name] = (shape, values)

    n_s = config["num_branch"] * config["num_synapse_per_branch"]
    routing = None
    if config["input_to_synapse_routing"] == 0:
        for key in _ROUTING_KEYS:
            if key in state_dict and state_dict[key].numel:
                raise ConvertError("tensor '%s' holds %d entries, but the model config has no "
                                   "input_to_synapse_routing" % (key, state_dict[key].numel))
    else:
        cols = []
        for key in _ROUTING_KEYS:
            if key not in state_dict:
                raise ConvertError("missing tensor '%s' (%d,) of the %s" % (
                    key, n_s, off["input_to_synapse_routing"]))
            t = state_dict[key]
            if tuple(t.shape) != (n_s,):
                raise ConvertError("tensor '%s' has shape %s, the model config implies (%d,)"
                                   % (key, _shape_str(t.shape), n_s))
            cols.append(_int_values(key, t, key == "valid_indices_mask"))
        idx, mask = cols
        n_in = config["num_input"]
        for j, v in enumerate(idx):
            if not 0 <= v < n_in:
                raise ConvertError("tensor 'input_to_synapse_indices'[%d] = %d is outside "
                                   "[0, %d)" % (j, v, n_in))
        for j, v in enumerate(mask):
            if v not in (0, 1):
                raise ConvertError("tensor 'valid_indices_mask'[%d] = %d is not 0 or 1" % (j, v))
        routing = (idx, mask)
    meta = collections.OrderedDict([("formulation", "v1" if formulation == 1 else "v2")])
    meta.update(metadata or {})
    try:
        return elmfile.ElmModel(config, tensors, routing, meta)
    except elmfile.ElmFileError as e:
        raise ConvertError(str(e)) from None


def _read_text(path, what):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except UnicodeDecodeError:
        raise ConvertError("%s %s is not UTF-8 text" % (what, path)) from None


def _load_json(path, what):
    text = _read_text(path, what)
    try:
        return text, json.loads(text)
    except ValueError as e:
        raise ConvertError("%s %s is not valid JSON: %s" % (what, path, e)) from None


def _default_config_path(pt_path):
    """Where an official config lives: <stem>.model_config.json (what export
    writes), else model_config.json in the checkpoint's folder (the official
    layout)."""
    stem = os.path.splitext(pt_path)[0]
    for cand in (stem + ".model_config.json",
                 os.path.join(os.path.dirname(os.path.abspath(pt_path)), "model_config.json")):
        if os.path.isfile(cand):
            return cand
    raise ConvertError("no model config found for %s (looked for %s.model_config.json and "
                       "model_config.json beside it): pass --config" % (pt_path, stem))


def official_to_elm(pt_path, config_json_path=None, out_path=None):
    """Convert an official checkpoint (+ its model_config.json) to a .elm file.

    ``config_json_path`` None looks beside the checkpoint. Returns the
    ElmModel written to ``out_path`` (nothing is written when it is None).
    """
    pt_path = os.fspath(pt_path)
    if config_json_path is None:
        config_json_path = _default_config_path(pt_path)
    cfg_text, cfg = _load_json(config_json_path, "model config")
    with open(pt_path, "rb") as f:
        raw = f.read()
    try:
        state_dict = torchzip.load_state_dict(io.BytesIO(raw))
    except torchzip.TorchFileError as e:
        raise ConvertError("%s: %s" % (pt_path, e)) from None
    meta = collections.OrderedDict([
        ("source", os.path.basename(pt_path)),
        ("source_sha256", hashlib.sha256(raw).hexdigest()),
        ("official_config", cfg_text),
    ])
    folder = os.path.dirname(os.path.abspath(pt_path))
    results = os.path.join(folder, "eval_results.json")
    if os.path.isfile(results):
        _, obj = _load_json(results, "published metrics")
        meta["published_metrics"] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    stats = os.path.join(folder, "model_stats.json")
    if os.path.isfile(stats):
        _, obj = _load_json(stats, "model stats")
        if isinstance(obj, dict) and isinstance(obj.get("model_param_count"), int):
            meta["published_param_count"] = str(obj["model_param_count"])
    meta["converter"] = "libelm elm.convert"
    model = official_to_model(state_dict, cfg, meta)
    if out_path is not None:
        elmfile.write(out_path, model)
    return model


# ---------------------------------------------------------------------------
# Export


def model_to_official(model):
    """ElmModel -> (official state dict of torchzip.Tensor, official config dict)."""
    c = model.config
    v1 = c["formulation"] == 1
    sd = collections.OrderedDict()

    def put(name, dtype, shape, values):
        sd[name] = torchzip.Tensor(dtype, shape, values)

    # The official state_dict order: parameters as registered in __init__.
    for name in ("w_s_proto", "tau_s" if v1 else "tau_b", "tau_m_proto"):
        shape, values = model.tensors[name]
        put(_official_name(name), "float32", shape, values)
    routing = c["input_to_synapse_routing"]
    if model.routing is None:
        # The official model keeps nn.Parameter(None): empty float tensors.
        put("input_to_synapse_indices", "float32", (0,), [])
        put("valid_indices_mask", "float32", (0,), [])
    else:
        idx, mask = model.routing
        put("input_to_synapse_indices", "int64", (len(idx),), idx)
        # neuronio routing builds a bool mask, random routing an int64 one.
        put("valid_indices_mask", "bool" if routing == 2 else "int64", (len(mask),), mask)
    for name, (shape, values) in model.tensors.items():
        if name.startswith("mlp.") or name.startswith("readout."):
            put(_official_name(name), "float32", shape, values)
    cfg = collections.OrderedDict([
        ("num_input", c["num_input"]),
        ("num_output", c["num_output"]),
        ("num_memory", c["num_memory"]),
        ("lambda_value", c["lambda_value"]),
        ("mlp_num_layers", c["mlp_num_layers"]),
        ("mlp_hidden_size", c["mlp_hidden_size"]),
        ("mlp_activation", "silu" if c["mlp_activation"] == 1 else "relu"),
        ("tau_s_value" if v1 else "tau_b_value", c["tau_s_value"]),
        ("memory_tau_min", c["memory_tau_min"]),
        ("memory_tau_max", c["memory_tau_max"]),
        ("learn_memory_tau", bool(c["learn_memory_tau"])),
        ("w_s_value", c["w_s_value"]),
        ("num_branch", c["num_branch"]),
        ("num_synapse_per_branch", c["num_synapse_per_branch"]),
        ("input_to_synapse_routing", {0: None, 1: "random_routing",
                                      2: "neuronio_routing"}[routing]),
        ("delta_t", c["delta_t"]),
    ])
    return sd, cfg


def default_config_out(pt_path):
    return os.path.splitext(os.fspath(pt_path))[0] + ".model_config.json"


def elm_to_pt(elm_path, out_path, config_out=None):
    """Export a .elm model as an official state dict (.pt) plus its official
    model config json (default ``<out stem>.model_config.json``).

    Returns the path of the config json.
    """
    model = elmfile.read(elm_path)
    sd, cfg = model_to_official(model)
    if config_out is None:
        config_out = default_config_out(out_path)
    text = json.dumps(cfg, indent=4) + "\n"
    torchzip.save(sd, out_path)
    elmfile.atomic_write(config_out, text.encode("utf-8"))
    return config_out


_NPY_DESCR = {"f": "<f4", "q": "<i8", "B": "|u1"}


def npy_bytes(values, shape):
    """An NPY 1.0 file of an array.array (typecode f, q or B) and a shape."""
    descr = _NPY_DESCR[values.typecode]
    if len(shape) == 1:
        shape_repr = "(%d,)" % shape[0]
    else:
        shape_repr = "(" + ", ".join(str(s) for s in shape) + ")"
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_repr)
    # magic (6) + version (2) + header length (2) + header, padded with spaces
    # and ended by a newline to a multiple of 64 bytes, as numpy writes it.
    total = 10 + len(header) + 1
    header += " " * ((-total) % 64) + "\n"
    if len(header) > 0xFFFF:
        raise ConvertError("NPY header too long")
    data = values
    if values.itemsize > 1 and sys.byteorder != "little":
        data = type(values)(values.typecode, values)
        data.byteswap()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin-1") \
        + data.tobytes()


def _npz_member(zf, name, data):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def elm_to_npz(elm_path, out_path):
    """Export a .elm model as an .npz archive (see the module docstring)."""
    model = elmfile.read(elm_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, (shape, values) in model.tensors.items():
            _npz_member(zf, name + ".npy", npy_bytes(values, shape))
        if model.routing is not None:
            idx, mask = model.routing
            _npz_member(zf, "routing.idx.npy", npy_bytes(array.array("q", idx), (len(idx),)))
            _npz_member(zf, "routing.mask.npy",
                        npy_bytes(array.array("B", mask), (len(mask),)))
        cfg = collections.OrderedDict(model.config)
        _npz_member(zf, "config.json", json.dumps(cfg, indent=2).encode("utf-8") + b"\n")
        _npz_member(zf, "metadata.json",
                    json.dumps(model.metadata, indent=2, ensure_ascii=False)
                    .encode("utf-8", "surrogateescape") + b"\n")
    elmfile.atomic_write(out_path, buf.getvalue())


# ---------------------------------------------------------------------------
# Command line


def _info(path, out):
    model = elmfile.read(path)
    print("%s: ELM %s, %d parameters" % (path, model.formulation,
                                         sum(len(v) for _, v in model.tensors.values())),
          file=out)
    for key, value in model.config.items():
        print("  %-26s %s" % (key, value), file=out)
    for name, (shape, _) in model.tensors.items():
        print("  tensor %-19s %s" % (name, _shape_str(shape)), file=out)
    for key, value in model.metadata.items():
        short = value if len(value) <= 60 and "\n" not in value else \
            value[:57].replace("\n", " ") + "..."
        print("  meta %-21s %s" % (key, short), file=out)


def main(argv=None):
    """The elm-convert command; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="elm-convert",
        description="Convert official ELM PyTorch checkpoints to .elm files and export .elm "
                    "models to .pt or .npz (no torch needed).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("official", help="official checkpoint (.pt) -> .elm")
    p.add_argument("checkpoint", help="state dict saved by the official code (.pt)")
    p.add_argument("--config", help="its model_config.json (default: <stem>.model_config.json "
                                     "or model_config.json beside the checkpoint)")
    p.add_argument("-o", "--output", required=True, help="the .elm file to write")
    p = sub.add_parser("export", help=".elm -> .pt (official state dict) or .npz")
    p.add_argument("model", help="a .elm file")
    p.add_argument("-o", "--output", required=True, help="OUT.pt or OUT.npz")
    p.add_argument("--config-out", help="where the official model config json of a .pt "
                                        "export goes (default: <stem>.model_config.json)")
    p = sub.add_parser("info", help="print a .elm file's hyper-parameters, tensors, metadata")
    p.add_argument("model", help="a .elm file")
    args = parser.parse_args(argv)
    try:
        if args.command == "official":
            model = official_to_elm(args.checkpoint, args.config, args.output)
            print("wrote %s (ELM %s, %d tensors)" % (args.output, model.formulation,
                                                     len(model.tensors)))
        elif args.command == "export":
            ext = os.path.splitext(args.output)[1].lower()
            if ext == ".pt" or ext == ".pth":
                cfg = elm_to_pt(args.model, args.output, args.config_out)
                print("wrote %s and %s" % (args.output, cfg))
            elif ext == ".npz":
                if args.config_out:
                    parser.error("--config-out applies to .pt exports only")
                elm_to_npz(args.model, args.output)
                print("wrote %s" % args.output)
            else:
                parser.error("the output must end in .pt or .npz, got %r" % args.output)
        else:
            _info(args.model, sys.stdout)
    except (ConvertError, elmfile.ElmFileError, torchzip.TorchFileError, OSError) as e:
        print("elm-convert: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
