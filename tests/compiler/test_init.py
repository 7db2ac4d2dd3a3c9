"""Importing the repository's folders as top-level packages is refused with a clear line,
instead of silently building a second copy of svf-deploy."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["compiler", "models"])
def test_repo_root_import_is_refused(name):
    r = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and f"Import svf_deploy.{name} instead" in last
