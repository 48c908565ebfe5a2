"""The 0.5 thread settings through the Python binding: same results as one
thread within float tolerance, deterministic for a given count, bad counts
raise with the library's message."""
import pytest

np = pytest.importorskip("numpy")
import elm  # noqa: E402


def _model():
    return elm.Model(num_input=6, num_output=3, num_memory=5, seed=3)


def test_state_threads_match_one_thread():
    model = _model()
    x = np.random.default_rng(0).standard_normal((4, 30, 6)).astype(np.float32)
    one = model.state(4)
    y1 = one.forward(x)
    two = model.state(4)
    two.set_threads(2)
    y2 = two.forward(x)
    np.testing.assert_allclose(y2, y1, rtol=1e-5, atol=1e-6)
    again = model.state(4)
    again.set_threads(2)
    assert np.array_equal(again.forward(x), y2)
    with pytest.raises(elm.ElmError) as e:
        two.set_threads(5)
    assert "elm_state_set_threads" in str(e.value) or e.value.function == "elm_state_set_threads"
    for s in (one, two, again):
        s.close()
    model.close()


def test_trainer_threads_option():
    from elm.training import Loss, Optimizer, Trainer
    model = _model()
    opt = Optimizer(model, "adam", lr=1e-2)
    loss = Loss("mse", 3)
    tr = Trainer(model, opt, loss, 4, 20)
    tr.set(threads=2)
    assert tr.get("threads") == 2 if hasattr(tr, "get") else True
    x = np.random.default_rng(1).standard_normal((4, 20, 6)).astype(np.float32)
    t = np.zeros((4, 20, 3), np.float32)
    first = tr.step(x, target=t)
    for _ in range(20):
        last = tr.step(x, target=t)
    assert last < first
    tr.close()
    model.close()
