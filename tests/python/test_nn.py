"""elm.nn: ELMCell and ELM with the call shapes of torch.nn.LSTMCell and
torch.nn.LSTM(batch_first=True), against libelm (ELM_LIBRARY)."""

import array
import os

import pytest

np = pytest.importorskip("numpy")


@pytest.fixture(scope="module")
def E():
    path = os.environ.get("ELM_LIBRARY")
    if not path or not os.path.exists(path):
        pytest.skip("ELM_LIBRARY is not set to an existing libelm.so")
    import elm
    return elm


@pytest.fixture
def model(E):
    cfg = E.Config(num_input=5, num_output=2, num_memory=6, mlp_hidden_size=12)
    with E.Model(cfg, seed=11) as m:
        yield m


def rand_x(B, T, n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (B, T, n)).astype(np.float32)


def test_cell_stepping_equals_the_sequence_layer(E, model):
    x = rand_x(3, 25, 5)
    layer, cell = E.ELM(model), E.ELMCell(model)
    Y, s_seq = layer(x)
    assert Y.shape == (3, 25, 2) and s_seq.shape == (3, model.state_size)
    state, ys = None, []
    for t in range(25):
        y_t, state = cell(x[:, t], state)
        assert y_t.shape == (3, 2)
        ys.append(y_t)
    np.testing.assert_allclose(np.stack(ys, 1), Y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state, s_seq, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Y, model.forward(x), rtol=1e-5, atol=1e-6)


def test_chunks_continue_the_sequence(E, model):
    x = rand_x(2, 30, 5, seed=1)
    layer = E.ELM(model)
    full, _ = layer(x)
    a, s = layer(x[:, :10])
    b, s = layer(x[:, 10:], s)
    np.testing.assert_allclose(np.concatenate([a, b], 1), full, rtol=1e-5, atol=1e-6)


def test_snapshots_are_values(E, model):
    """The state passed in is never modified: it can be reused."""
    x = rand_x(2, 8, 5, seed=2)
    cell = E.ELMCell(model)
    _, s0 = cell(x[:, 0])
    keep = s0.copy()
    y1, s1 = cell(x[:, 1], s0)
    y1b, s1b = cell(x[:, 1], s0)  # same branch again
    np.testing.assert_array_equal(s0, keep)
    np.testing.assert_array_equal(y1, y1b)
    np.testing.assert_array_equal(s1, s1b)
    assert s1 is not s0
    zero = cell.initial_state(2)
    np.testing.assert_array_equal(cell(x[:, 0], zero)[0], cell(x[:, 0])[0])


def test_state_object_is_advanced_in_place(E, model):
    x = rand_x(4, 12, 5, seed=3)
    ref, ref_state = E.ELM(model)(x)
    cell = E.ELMCell(model)
    with model.state(4) as st:
        ys = []
        for t in range(12):
            y, out = cell(x[:, t], st)
            assert out is st
            ys.append(y)
        np.testing.assert_allclose(np.stack(ys, 1), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(st.get(), ref_state, rtol=1e-5, atol=1e-6)
        st.reset()
        y, out = E.ELM(model)(x, st)
        assert out is st
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_batch_size_may_change_between_calls(E, model):
    layer = E.ELM(model)
    for B in (1, 3, 2, 3):
        y, s = layer(rand_x(B, 4, 5, seed=B))
        assert y.shape == (B, 4, 2) and s.shape == (B, model.state_size)
    layer.close()
    y, _ = layer(rand_x(2, 4, 5))  # workspaces come back after close()
    assert y.shape == (2, 4, 2)


def test_errors(E, model):
    cell, layer = E.ELMCell(model), E.ELM(model)
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, 5\), got \(2, 4\)"):
        cell(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, \?, 5\)"):
        layer(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"state: expected shape \(2, %d\)" % model.state_size):
        cell(np.zeros((2, 5), np.float32), np.zeros((3, model.state_size), np.float32))
    with model.state(3) as st:
        with pytest.raises(ValueError, match="3 streams, x has batch 2"):
            cell(np.zeros((2, 5), np.float32), st)
    other = E.Model(E.Config(num_input=5, num_output=2), seed=0)
    with other.state(2) as st, pytest.raises(ValueError, match="another model"):
        cell(np.zeros((2, 5), np.float32), st)
    other.close()
    x = rand_x(2, 3, 5)
    x[1, 2, 0] = np.nan
    with pytest.raises(E.ElmError) as ei:
        layer(x)
    assert ei.value.status == "ELM_E_NONFINITE" and "nan" in ei.value.message
    bad_state = np.full((2, model.state_size), np.nan, np.float32)
    with pytest.raises(E.ElmError) as ei:
        cell(np.zeros((2, 5), np.float32), bad_state)
    assert ei.value.status == "ELM_E_NONFINITE"
    with pytest.raises(TypeError, match="must be an elm.Model"):
        E.ELMCell("model")


def test_without_numpy_buffers(E, model):
    x = rand_x(2, 6, 5, seed=4)
    ref, ref_state = E.ELM(model)(x)
    cell = E.ELMCell(model)
    state, ys = None, []
    for t in range(6):
        xt = array.array("f", x[:, t].ravel().tolist())
        y, state = cell(xt, state)
        assert isinstance(y, array.array) and isinstance(state, array.array)
        ys.append(np.frombuffer(y, np.float32).reshape(2, 2))
    np.testing.assert_allclose(np.stack(ys, 1), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.frombuffer(state, np.float32).reshape(2, -1), ref_state,
                               rtol=1e-5, atol=1e-6)
    mv = memoryview(array.array("f", x.ravel().tolist())).cast("B").cast("f", (2, 6, 5))
    y, s = E.ELM(model)(mv)
    assert isinstance(y, array.array) and isinstance(s, array.array)
    np.testing.assert_allclose(np.frombuffer(y, np.float32).reshape(ref.shape), ref,
                               rtol=1e-5, atol=1e-6)


def test_official_fixture_through_the_cell(E, fixtures_dir):
    """A reference fixture's outputs, stepped one time step at a time."""
    case = fixtures_dir / "tiny_v2_silu_branch"
    from test_api_core import _fixture_model  # the fixture as a checkpoint
    import tempfile
    import pathlib
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = _fixture_model(E, case, pathlib.Path(tmp))
        with E.Model.from_official(folder) as m:
            x, y_ref = np.load(case / "x.npy"), np.load(case / "y.npy")
            cell, state, ys = E.ELMCell(m), None, []
            for t in range(x.shape[1]):
                y, state = cell(x[:, t], state)
                ys.append(y)
            np.testing.assert_allclose(np.stack(ys, 1), y_ref, rtol=1e-4, atol=1e-5)
