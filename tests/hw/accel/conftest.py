"""Shared fixtures: the bundled model compiled to its integer graph, and its golden clip."""

import pytest
import torch


@pytest.fixture(scope="session")
def bundled():
    """``(graph, golden, frames)``: the bundled model's integer graph, ``reference.run(record=True)``
    on the first validation clip, and that clip ``[T, 1, C, H, W]``."""
    from svf_deploy.api import BUNDLED_MODEL
    from svf_deploy.compiler import reference
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models import data as mdata
    from svf_deploy.models.checkpoint import load_checkpoint

    model, ck = load_checkpoint(BUNDLED_MODEL)
    clips, _ = mdata.make_split(mdata.MovingDigitsConfig.from_dict(ck["data"]), "val")
    frames = clips[:1].transpose(0, 1).contiguous()
    graph, _ = compile_model(model, CompileOptions(), frame_shape=tuple(clips.shape[2:]))
    with torch.no_grad():
        golden = reference.run(graph, frames, record=True)
    return graph, golden, frames
