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

``elm.neuronio`` (needs numpy)
    conversion of the original NeuronIO simulation pickles into libelm's
    memory-mapped layout (docs/datasets/neuronio.md) and a numpy reader of
    it (``python3 -m elm.neuronio convert OUT.nio IN.p ...``).
"""

__all__ = ["elmfile", "torchzip", "convert", "neuronio"]
