"""libelm for Python: the Expressive Leaky Memory (ELM) neuron.

The C library through ctypes (loaded on first use, not at import):

``Config``, ``Model``, ``State`` (elm.core)
    hyper-parameters, a neuron's parameters and files, streaming state;
``ELMCell``, ``ELM`` (elm.nn)
    the call shapes of torch.nn.LSTMCell / torch.nn.LSTM(batch_first=True);
``Loss``, ``Optimizer``, ``Trainer``, ``TrainConfig`` (elm.training),
``Dataset`` (elm.data)
    training;
``ElmError``
    raised by every failed libelm call (``.code``, ``.status``,
    ``.function``, ``.message``).

Pure Python standard library modules (no libelm needed):

``elm.elmfile``
    reader and writer of the ``.elm`` model format (docs/file-format.md);
``elm.torchzip``
    reader and writer of ``torch.save`` checkpoints without torch, with a
    restricted unpickler that never runs code from the file;
``elm.convert``
    import of the official PyTorch checkpoints into ``.elm`` and export of
    ``.elm`` models to ``.pt`` and ``.npz`` (``python3 -m elm.convert``).

``elm.neuronio`` (needs numpy)
    conversion of the original NeuronIO simulation pickles into libelm's
    memory-mapped layout (docs/datasets/neuronio.md) and a numpy reader of
    it (``python3 -m elm.neuronio convert OUT.nio IN.p ...``).

Importing ``elm`` loads neither libelm nor numpy: the names above are
resolved on first access (PEP 562).
"""

import importlib

__version__ = "0.5.0"

# public name -> module defining it
_LAZY = {
    "Config": "core", "Model": "core", "State": "core", "ParamInfo": "core",
    "ElmError": "_capi", "ClosedError": "_capi", "LibraryNotFound": "_capi",
    "ELMCell": "nn", "ELM": "nn",
    "gemm_info": "core", "version": "core",
    "Loss": "training", "Optimizer": "training", "Trainer": "training",
    "TrainConfig": "training", "Dataset": "data",
}

__all__ = ["elmfile", "torchzip", "convert", "neuronio"] + list(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        if name in ("elmfile", "torchzip", "convert", "neuronio", "core", "nn",
                    "training", "data", "_capi", "_buffers"):
            return importlib.import_module("." + name, __name__)
        raise AttributeError("module 'elm' has no attribute %r" % name)
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
