"""`elm convert` and `elm eval` on the official best NeuronIO model and the
reference NeuronIO file (../shared); skipped when those are absent."""
import os
import shutil
import re
import subprocess
import sys

import pytest

from conftest import SOURCE_ROOT, run

SHARED = os.environ.get("ELM_SHARED", os.path.join(SOURCE_ROOT, "..", "shared"))
MODEL_DIR = os.path.join(SHARED, "reference", "elmneuron-models", "best_elm_neuron")
PICKLE = os.path.join(SHARED, "reference", "neuronio",
                      "sim__saved_InputSpikes__55_outSpikes__8_simulationRuns__6_secDuration__"
                      "randomSeed_7101.p")
# docs/datasets/neuronio_eval.md: the official evaluation of best_elm_neuron
OFFICIAL_AUC = 0.99370703891939


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    if not (os.path.isdir(MODEL_DIR) and os.path.isfile(PICKLE)):
        pytest.skip("../shared reference data absent")
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("/usr/bin/python3 absent")
    tmp = tmp_path_factory.mktemp("nio")
    nio = tmp / "real.nio"
    env = dict(os.environ, PYTHONPATH=os.path.join(SOURCE_ROOT, "bindings", "python"))
    conv = subprocess.run(["/usr/bin/python3", "-m", "elm.neuronio", "convert", str(nio), PICKLE],
                          capture_output=True, text=True, env=env)
    if conv.returncode != 0:
        pytest.skip("the NeuronIO converter failed (numpy missing?): " + conv.stderr[-300:])
    model = tmp / "best.elm"
    r = run("convert", MODEL_DIR, model)
    assert r.returncode == 0, r.stderr
    assert "54002 trainable parameters" in r.stdout
    return model, nio


def metrics(stdout):
    """{metric: [value per column]} from eval's table."""
    table = {}
    for line in stdout.splitlines()[1:]:
        parts = line.split()
        table[parts[0]] = [float(v) for v in parts[1:]]
    return table


def test_eval_reproduces_the_official_auc(files):
    model, nio = files
    r = run("eval", model, nio)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:3] == ["metric", "windows", "continuous"]
    t = metrics(r.stdout)
    assert round(t["auc"][0], 6) == round(OFFICIAL_AUC, 6)
    assert t["auc"][0] == pytest.approx(OFFICIAL_AUC, abs=5e-7)
    assert t["soma_rmse_mv"][0] == pytest.approx(0.647030, abs=1e-6)
    assert t["simulations"] == [7] and t["spikes"] == [26]
    for key in ["tp_at_fp_0.0025", "pauc_at_fp_0.0025", "tp_at_fp_0.01", "pauc_at_fp_0.01",
                "soma_mae_mv", "soma_explained_variance"]:
        assert len(t[key]) == 2, key


def test_eval_knows_a_neuronio_file_by_its_content(files, tmp_path):
    model, nio = files
    named = tmp_path / "looks_like_a_config.yaml"
    shutil.copyfile(nio, named)
    r = run("eval", model, named, "--mode", "windows")
    assert r.returncode == 0, r.stderr
    assert metrics(r.stdout)["auc"][0] == pytest.approx(OFFICIAL_AUC, abs=5e-7)


def test_eval_one_mode(files):
    model, nio = files
    r = run("eval", model, nio, "--mode", "continuous")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["metric", "continuous"]
    t = metrics(r.stdout)
    assert len(t["auc"]) == 1 and t["auc"][0] == pytest.approx(0.994019, abs=1e-6)
    assert run("eval", model, nio, "--mode", "both").returncode == 0
    assert run("eval", model, nio, "--mode", "sideways").returncode == 2


def test_info_on_the_converted_model(files):
    model, _ = files
    r = run("info", model)
    assert r.returncode == 0, r.stderr
    assert "parameters: 54002 trainable" in r.stdout
    assert "input_to_synapse_routing   neuronio" in r.stdout
    assert re.search(r"routing: neuronio, 4500 synapses", r.stdout)


def test_eval_of_a_model_that_is_not_for_neuronio(files, tmp_path):
    _, nio = files
    tiny = tmp_path / "t.yaml"
    tiny.write_text(open(os.path.join(os.path.dirname(__file__), "tiny_listops.yaml")).read())
    assert run("train", tiny, "--quiet").returncode == 0
    r = run("eval", tmp_path / "t.elm", nio)
    assert r.returncode == 1 and r.stderr.startswith("elm: ")
