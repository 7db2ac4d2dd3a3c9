"""The bundled model compiled once per session for each interchange target (subprocesses,
as a user runs them); tests read the OUTDIRs."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _svf_compile(*args):
    return subprocess.run([str(BIN / "svf-compile"), *map(str, args)], capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="session")
def svf_compile():
    """Run ``svf-compile ARGS`` as a subprocess; returns the CompletedProcess."""
    return _svf_compile


@pytest.fixture(scope="session")
def nir_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("nir") / "out"
    r = _svf_compile("--target", "nir", "-o", out, "--clips", "16", "--quiet")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "out"
    r = _svf_compile("--target", "onnx", "-o", out, "--clips", "16", "--quiet")
    assert r.returncode == 0, r.stderr
    return out
