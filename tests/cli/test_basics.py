"""The `elm` program's command line: help, usage errors, config errors,
info, eval on a config, plot, bench, and convert's failures."""
import ctypes
import json
import os
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import run, tiny_config, read_tsv


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "usage: elm COMMAND" in r.stdout
    for cmd in ["train", "eval", "info", "convert", "bench", "plot", "version"]:
        r = run(cmd, "--help")
        assert r.returncode == 0, cmd
        assert r.stdout.startswith("usage: elm " + cmd), cmd
    r = run("version")
    assert r.returncode == 0 and re.match(r"elm \d+\.\d+\.\d+ \(libelm \d+\.\d+\.\d+", r.stdout)


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["train"], ["train", "a.yaml", "b.yaml"], ["train", "a.yaml", "--bogus"],
    ["train", "a.yaml", "--seed", "-3"], ["train", "a.yaml", "--out"], ["train", "--quiet=1", "a"],
    ["info"], ["eval", "m.elm"], ["eval", "m.elm", "x.nio", "--split", "val"],
    ["eval", "m.elm", "c.yaml", "--mode", "windows"], ["bench", "--threads", "0"],
    ["bench", "extra"], ["plot"], ["convert", "only-one"], ["version", "x"],
])
def test_usage_errors_exit_2(args):
    r = run(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stderr.strip(), args


def test_bad_config_names_file_line_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  num_input: 15\n  num_output: 10\n  num_memroy: 8\n")
    r = run("train", bad)
    assert r.returncode == 1
    assert "bad.yaml:4:3:" in r.stderr and "num_memroy" in r.stderr, r.stderr
    bad.write_text("model:\n  num_input: [1, 2\n")
    r = run("train", bad)
    assert r.returncode == 1 and re.search(r"bad\.yaml:\d+:\d+: syntax error", r.stderr), r.stderr
    r = run("train", tmp_path / "missing.yaml")
    assert r.returncode == 1 and "missing.yaml" in r.stderr


def test_missing_or_damaged_model_fails_with_1(tmp_path):
    r = run("info", tmp_path / "none.elm")
    assert r.returncode == 1 and "none.elm" in r.stderr
    junk = tmp_path / "junk.elm"
    junk.write_bytes(b"not a model at all" * 10)
    r = run("info", junk)
    assert r.returncode == 1 and r.stderr.startswith("elm: ")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny run: (config, model, log)."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(tmp)
    r = run("train", cfg, "--quiet")
    assert r.returncode == 0, r.stderr
    return cfg, tmp / "tiny.elm", tmp / "tiny.metrics.tsv", r.stdout


def trainable_from_c_api(model_path):
    lib_path = os.environ.get("ELM_LIBRARY")
    if not lib_path:
        pytest.skip("ELM_LIBRARY not set")
    lib = ctypes.CDLL(lib_path)
    m = ctypes.c_void_p()
    assert lib.elm_model_load(str(model_path).encode(), ctypes.byref(m)) == 0
    n = ctypes.c_size_t()
    lib.elm_model_size.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)]
    assert lib.elm_model_size(m, 8, ctypes.byref(n)) == 0  # ELM_SIZE_TRAINABLE
    lib.elm_model_free.argtypes = [ctypes.c_void_p]
    lib.elm_model_free(m)
    return n.value


def test_info_reports_the_c_api_parameter_count(trained):
    _, model, _, _ = trained
    r = run("info", model)
    assert r.returncode == 0, r.stderr
    m = re.search(r"^parameters: (\d+) trainable", r.stdout, re.M)
    assert m, r.stdout
    assert int(m.group(1)) == trainable_from_c_api(model)
    assert int(m.group(1)) == 625
    for text in ["num_memory                 8", "mlp_activation             relu",
                 "input_to_synapse_routing   none", "routing: none", "train_config",
                 "test_accuracy", "libelm: ", "gemm: ", "bytes)"]:
        assert text in r.stdout, text
    full = run("info", model, "--full")
    assert full.returncode == 0 and "source: \"listops_generate\"" in full.stdout


def test_eval_on_the_config_matches_the_training_report(trained):
    cfg, model, _, train_out = trained
    test_loss = float(re.search(r"^test_loss (\S+)", train_out, re.M).group(1))
    r = run("eval", model, cfg)
    assert r.returncode == 0, r.stderr
    assert "split test: 32 samples" in r.stdout
    loss = float(re.search(r"^loss (\S+)", r.stdout, re.M).group(1))
    assert loss == pytest.approx(test_loss, rel=1e-7)
    assert re.search(r"^accuracy 0\.\d+|^accuracy [01]$", r.stdout, re.M)
    r = run("eval", model, cfg, "--split", "val")
    assert r.returncode == 0 and "split val: 8 samples" in r.stdout


def test_eval_refuses_a_config_of_another_model(trained, tmp_path):
    _, model, _, _ = trained
    other = tiny_config(tmp_path, num_memory=9)
    r = run("eval", model, other)
    assert r.returncode == 1 and "num_memory" in r.stderr, r.stderr


def test_plot_writes_valid_svg(trained, tmp_path):
    _, _, log, _ = trained
    out = tmp_path / "curve.svg"
    r = run("plot", log, "-o", out)
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    texts = [t.text for t in root.iter(ns + "text")]
    for label in ["epoch", "loss", "train loss", "validation loss", "validation accuracy"]:
        assert label in texts, label
    # train loss, val loss and val accuracy: one polyline each, one point per epoch
    lines = root.findall(ns + "polyline")
    assert len(lines) == 3
    for pl in lines:
        assert len(pl.get("points").split()) == 4


def test_plot_single_epoch_and_missing_values(tmp_path):
    log = tmp_path / "one.tsv"
    log.write_text("epoch\tstep\ttrain_loss\tval_loss\tval_accuracy\n1\t10\t0.5\tnan\tnan\n")
    r = run("plot", log)
    assert r.returncode == 0, r.stderr
    root = ET.parse(tmp_path / "one.svg").getroot()
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 1
    bad = tmp_path / "bad.tsv"
    bad.write_text("epoch\ttrain_loss\n1\t0.5\n2\tzero\n")
    r = run("plot", bad)
    assert r.returncode == 1 and "bad.tsv:3:" in r.stderr


def test_bench_quick_prints_json_lines():
    r = run("bench", "--quick", "--threads", "1", "--cases", "neuronio", "--no-peak")
    assert r.returncode == 0, r.stderr
    cases = [json.loads(line) for line in r.stdout.splitlines()]
    assert [c["case"] for c in cases] == ["neuronio_stream", "neuronio_forward",
                                          "neuronio_stream_events", "neuronio_forward_events",
                                          "neuronio_train", "neuronio_train_events"]
    for c in cases:
        assert c["sample_steps_per_s"] > 0 and c["us_per_step"] > 0 and c["threads"] == 1
    assert cases[0]["B"] == 1 and cases[1]["B"] == 32


def test_convert_without_python_or_package(tmp_path):
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"x")
    out = tmp_path / "out.elm"
    r = run("convert", pt, out, env={"ELM_PYTHON": str(tmp_path / "no-python")})
    assert r.returncode == 1 and "Python" in r.stderr and not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("convert", pt, out, env={"ELM_PYTHONPATH": str(empty)})
    assert r.returncode == 1 and "No module named" in r.stderr and not out.exists()
    r = run("convert", empty, out)
    assert r.returncode == 1 and "holds 0 checkpoints" in r.stderr
