"""`elm train`: outputs, the metrics log, --resume, and Ctrl-C (SIGINT)
giving a checkpoint, status 130 and a bit-identical resumed run."""
import os
import signal
import subprocess

import pytest

from conftest import elm_exe, run, tiny_config, read_tsv
from elm import elmfile

COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_auc", "val_rmse",
           "lr", "seconds"]


def tensors(path):
    return {name: list(values) for name, (shape, values) in elmfile.read(str(path)).tensors.items()}


def test_train_writes_model_log_and_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path)
    r = run("train", cfg)
    assert r.returncode == 0, r.stderr
    for name in ["tiny.elm", "tiny.metrics.tsv", "tiny.ckpt.elm"]:
        assert (tmp_path / name).is_file(), name
    # progress: not a terminal, so one plain line per epoch
    epoch_lines = [l for l in r.stderr.splitlines() if l.startswith("epoch ")]
    assert len(epoch_lines) == 4 and epoch_lines[0].startswith("epoch 1/4  step 3")
    assert "\r" not in r.stderr
    assert "test_loss" in r.stdout and "test_accuracy" in r.stdout
    header, rows = read_tsv(tmp_path / "tiny.metrics.tsv")
    assert header == COLUMNS
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert [int(row["step"]) for row in rows] == [3, 6, 9, 12]
    assert all(0 <= float(row["val_accuracy"]) <= 1 for row in rows)
    assert all(row["val_auc"] == "nan" for row in rows)
    meta = elmfile.read(str(tmp_path / "tiny.elm")).metadata
    assert meta["epochs"] == "4" and "listops_generate" in meta["train_config"]
    # --out, --log, --quiet and --seed
    r = run("train", cfg, "--out", tmp_path / "other.elm", "--log", tmp_path / "other.tsv",
            "--quiet", "--seed", "7")
    assert r.returncode == 0 and r.stderr == ""
    assert (tmp_path / "other.elm").is_file() and (tmp_path / "other.tsv").is_file()
    assert tensors(tmp_path / "other.elm") != tensors(tmp_path / "tiny.elm")


def test_resume_extends_a_finished_run(tmp_path):
    cfg = tiny_config(tmp_path)
    assert run("train", cfg, "--quiet").returncode == 0
    longer = tiny_config(tmp_path, epochs=6)  # same file, more epochs
    r = run("train", longer, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr and "at epoch 4, step 12" in r.stderr
    _, rows = read_tsv(tmp_path / "tiny.metrics.tsv")
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4, 5, 6]
    # the same as six epochs in one go
    one_go = tmp_path / "one"
    one_go.mkdir()
    assert run("train", tiny_config(one_go, epochs=6), "--quiet").returncode == 0
    assert tensors(tmp_path / "tiny.elm") == tensors(one_go / "tiny.elm")


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    cfg = tiny_config(tmp_path)
    r = run("train", cfg, "--resume")
    assert r.returncode == 0 and "no checkpoint at" in r.stderr


def start(cfg, *args):
    return subprocess.Popen([elm_exe(), "train", str(cfg)] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def interrupt_after_first_epoch(proc):
    """Sends SIGINT once the first epoch line appears; (stdout, stderr)."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("epoch 1/"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    return out, "".join(seen) + err


@pytest.mark.parametrize("configured", [True, False])
def test_sigint_checkpoints_and_resume_finishes_identically(tmp_path, configured):
    epochs = 300
    run_dir, ref_dir = tmp_path / "run", tmp_path / "ref"
    run_dir.mkdir()
    ref_dir.mkdir()
    extra = {} if configured else {"checkpoint": '""'}
    cfg = tiny_config(run_dir, epochs=epochs, **extra)
    ckpt = run_dir / ("tiny.ckpt.elm")
    proc = start(cfg)
    out, err = interrupt_after_first_epoch(proc)
    assert proc.returncode == 130, err
    assert "interrupted at epoch" in err and "--resume" in err, err
    assert ckpt.is_file()
    assert not (run_dir / "tiny.elm").exists()
    _, rows = read_tsv(run_dir / "tiny.metrics.tsv")
    done = len(rows)
    assert 1 <= done < epochs

    r = run("train", cfg, "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    _, rows = read_tsv(run_dir / "tiny.metrics.tsv")
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))

    # the interrupted and resumed run is the uninterrupted one, bit for bit
    r = run("train", tiny_config(ref_dir, epochs=epochs, **extra), "--quiet")
    assert r.returncode == 0, r.stderr
    assert tensors(run_dir / "tiny.elm") == tensors(ref_dir / "tiny.elm")
    _, ref_rows = read_tsv(ref_dir / "tiny.metrics.tsv")
    for a, b in zip(rows, ref_rows):
        assert {k: v for k, v in a.items() if k != "seconds"} == \
               {k: v for k, v in b.items() if k != "seconds"}


def test_training_error_exits_1(tmp_path):
    # a model section that does not fit the data: 14 inputs for 15 channels
    cfg = tiny_config(tmp_path, num_input=14)
    r = run("train", cfg)
    assert r.returncode == 1 and "elm: model.num_input is 14" in r.stderr, r.stderr
    assert "15" in r.stderr


def test_without_validation_the_val_columns_are_nan(tmp_path):
    cfg = tiny_config(tmp_path, val_fraction="0.0")
    r = run("train", cfg)
    assert r.returncode == 0, r.stderr
    assert "val_loss" not in r.stderr.splitlines()[-1]
    _, rows = read_tsv(tmp_path / "tiny.metrics.tsv")
    assert len(rows) == 4
    assert all(row["val_loss"] == "nan" and row["val_accuracy"] == "nan" for row in rows)
    assert float(rows[-1]["train_loss"]) > 0
