"""libelm for Python: the Expressive Leaky Memory (ELM) neuron.

Modules (pure Python standard library, importing nothing heavy):

``elm.elmfile``
    reader and writer of the ``.elm`` model format (docs/file-format.md);
``elm.torchzip``
    reader and writer of ``torch.save`` checkpoints without torch, with a
    restricted unpickler that never runs code from the file;
``elm.convert``
    import of the official PyTorch checkpoints into ``.elm`` and export of
    ``.elm`` models to ``.pt`` and ``.npz`` (``python3 -m elm.convert``).
"""

__all__ = ["elmfile", "torchzip", "convert"]
