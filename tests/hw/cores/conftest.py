import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def pytest_collection_modifyitems(items):
    # cores built only to check their parameters (core_for, refusals) are never elaborated
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable"))
