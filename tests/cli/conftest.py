"""Shared helpers of the tests of the `elm` program (ELM_CLI, set by meson)."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("ELM_SOURCE_ROOT", os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "bindings", "python"))


def elm_exe():
    exe = os.environ.get("ELM_CLI")
    if not exe or not os.access(exe, os.X_OK):
        pytest.skip("ELM_CLI does not name the built elm program")
    return exe


def run(*args, env=None, timeout=300, cwd=None):
    """Runs elm with args; a CompletedProcess with text stdout/stderr."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([elm_exe()] + [str(a) for a in args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


def tiny_config(tmp_path, name="tiny.yaml", **replace):
    """tiny_listops.yaml copied into tmp_path, with 'key: value' lines replaced."""
    with open(os.path.join(HERE, "tiny_listops.yaml")) as f:
        text = f.read()
    for key, value in replace.items():
        lines = text.splitlines()
        hits = [i for i, l in enumerate(lines) if l.strip().startswith(key + ":")]
        assert len(hits) == 1, key
        indent = lines[hits[0]][:len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
        lines[hits[0]] = "%s%s: %s" % (indent, key, value)
        text = "\n".join(lines) + "\n"
    path = tmp_path / name
    path.write_text(text)
    return path


def read_tsv(path):
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    header = rows[0]
    return header, [dict(zip(header, r)) for r in rows[1:]]
