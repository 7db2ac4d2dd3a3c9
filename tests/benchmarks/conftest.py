"""Benchmark scripts are loaded by path (``benchmarks/`` is not a package)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(stem: str):
    """Import ``benchmarks/<stem>.py`` as module ``svf_bench_<stem>`` (``benchmarks/`` on
    ``sys.path`` for its sibling imports)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"svf_bench_{stem}", BENCH / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def bench_script():
    """:func:`load_script`, for module-scoped fixtures."""
    return load_script
