"""Shared test settings: a fixed, small thread count so timings and results are steady on
the 2-core CI machine (torch's default oversubscribes when pytest and subprocesses share it)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(min(2, n))
    yield
    torch.set_num_threads(n)
