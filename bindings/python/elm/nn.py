"""ELM neurons with the call shapes of torch.nn.LSTMCell and torch.nn.LSTM.

    cell = ELMCell(model)              # like torch.nn.LSTMCell
    state = None                       # None = a fresh (zero) state
    for x_t in xs:                     # x_t (B, n_in)
        y_t, state = cell(x_t, state)  # y_t (B, n_out)

    layer = ELM(model)                 # like torch.nn.LSTM(batch_first=True)
    Y, state = layer(X)                # X (B, T, n_in) -> Y (B, T, n_out)
    Y2, state = layer(X2, state)       # continue where X stopped

What ``state`` is. By default it is a *snapshot*: a new float32 array of
shape (B, state_size) (numpy; a flat array.array without numpy) holding the
recurrent state after the call, exactly what ``State.get()`` returns. Like
the (h, c) tensors of an LSTM it is a value: the state you passed in is never
modified, so a state can be kept, compared, copied, stored (np.save) or fed
to several continuations. The price is one copy of B * state_size floats in
and out per call, small next to the step itself (state_size is n_s + n_m
floats per stream; one step costs a matrix product of the MLP).

For long streams stepped one time step at a time where that copy matters,
pass an :class:`elm.State` instead (``state = model.state(B)``): it is
advanced in place and returned, with no copy. A snapshot and a State give
identical outputs.

These wrappers run inference only; gradients are elm.training's business.
One thread at a time per cell/layer (they keep a private State workspace
per batch size).
"""

from . import _buffers as _b
from .core import Model, State

__all__ = ["ELMCell", "ELM"]


class _Base:
    def __init__(self, model):
        if not isinstance(model, Model):
            raise TypeError("%s(model): model must be an elm.Model, not %s" % (
                type(self).__name__, type(model).__name__))
        self.model = model
        self.input_size = model.num_input
        self.output_size = model.num_output
        self.state_size = model.state_size
        self._work = {}  # batch size -> State workspace

    def _workspace(self, B):
        st = self._work.get(B)
        if st is None or st.closed:
            st = self._work[B] = State(self.model, B)
        return st

    def _batch_of(self, x, shape):
        return _b.as_input(x, "float32", shape, "x").shape[0]

    def _prepare(self, B, state):
        """The State to run: the caller's (in place) or the workspace loaded
        from a snapshot (None = zeros)."""
        if isinstance(state, State):
            if state.model is not self.model:
                raise ValueError("state belongs to another model")
            if state.batch != B:
                raise ValueError("state has %d streams, x has batch %d" % (
                    state.batch, B))
            return state, True
        work = self._workspace(B)
        if state is None:
            work.reset()
        else:
            work.set(state)  # shape (B, state_size) checked, NaN refused
        return work, False

    def initial_state(self, batch=1, use_numpy=None):
        """A zero snapshot, (batch, state_size) float32."""
        return _b.zeros((batch, self.state_size), "float32", use_numpy)

    def close(self):
        """Free the workspaces (the model stays open)."""
        for st in self._work.values():
            st.close()
        self._work.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "%s(input_size=%d, output_size=%d, state_size=%d)" % (
            type(self).__name__, self.input_size, self.output_size,
            self.state_size)


class ELMCell(_Base):
    """One time step, like torch.nn.LSTMCell.

    ``cell(x_t, state=None) -> (y_t, state)``: x_t (B, n_in) float32,
    y_t (B, n_out); ``state`` None (zeros), a snapshot (B, state_size) or
    an elm.State (advanced in place). See the module docstring."""

    def __call__(self, x, state=None, use_numpy=None):
        B = self._batch_of(x, (None, self.input_size))
        run, in_place = self._prepare(B, state)
        y = run.step(x, use_numpy=use_numpy)
        if in_place:
            return y, run
        return y, run.get(use_numpy=_b.like_input(x, use_numpy))


class ELM(_Base):
    """A whole sequence, like torch.nn.LSTM(batch_first=True).

    ``layer(X, state=None) -> (Y, state)``: X (B, T, n_in) float32,
    Y (B, T, n_out); ``state`` as for :class:`ELMCell`: the state after the
    last step, to continue with the next chunk of the sequence."""

    def __call__(self, x, state=None, use_numpy=None):
        B = self._batch_of(x, (None, None, self.input_size))
        run, in_place = self._prepare(B, state)
        y = run.forward(x, use_numpy=use_numpy)
        if in_place:
            return y, run
        return y, run.get(use_numpy=_b.like_input(x, use_numpy))
