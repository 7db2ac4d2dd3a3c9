"""Cost model: dense additions per step, and the factored form of a fused SepConv."""

import numpy as np

from svf_deploy.compiler import ir
from svf_deploy.hw.costmodel import adds_per_step


def test_fused_depthwise_counts_and_factored_choice():
    C, O, k, H = 16, 32, 7, 5
    nodes = (
        ir.Input("x", (), shape=(2, H, H), bits=8),
        ir.Conv("c0", ("x",), weight=np.ones((C, 2, 1, 1), np.int64), out_scale=np.ones(C), acc_bits=14),
        ir.IntLIF("l0", ("c0",), theta=np.full(C, 3), bias=np.zeros(C, np.int64),
                  polarity=np.ones(C, np.int64), mem_bits=20),
        ir.Conv("pw", ("l0",), weight=np.ones((O, C, k, k), np.int64), padding=3,
                out_scale=np.ones(O), acc_bits=12),
    )
    g = ir.Graph(nodes, ("pw",), "integer", {"T": 2, "fused_depthwise": {"dw": "pw"}})
    costs = {c.name: c for c in adds_per_step(g)}
    pix = H * H
    assert costs["c0"].fused == pix * C * 2 * 8  # analog input: 8 bit-planes
    assert costs["pw"].fused == pix * O * C * k * k
    b = 14  # 49 * 127 = 6223 -> 13 bits + sign
    assert costs["pw"].factored == pix * C * k * k + pix * O * C * b
    assert costs["pw"].form.startswith("dw on spikes")
    assert costs["l0"].fused == pix * C
