"""Compiler tests run single-threaded: their tensors are tiny, and intra-op threads
only contend with each other (on a busy 2-core machine up to 100x slower)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
