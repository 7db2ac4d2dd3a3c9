"""``svf-compile --target zcu104`` end to end: files, manifest, RTL verification, refusals."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from svf_deploy.hw.accel import PRODUCTION, isa
from svf_deploy.models.errors import HardwareError

EXE = Path(sys.executable).parent / "svf-compile"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("zcu") / "out"
    r = subprocess.run([str(EXE), "--target", "zcu104", "--verify", "rtl", "--clips", "4", "-o", str(d)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return d, json.loads((d / "manifest.json").read_text()), r.stderr


def test_verify_rtl_records_a_clean_comparison(out):
    _, m, err = out
    v = m["rtl_verification"]
    assert v["compared"] == 36 and v["mismatches"] == 0 and v["values"] > 160_000
    assert v["cycles"] == v["predicted_cycles"]
    assert "verilator" in err  # progress shown


def test_files_a_board_needs(out):
    d, m, _ = out
    v = (d / "rtl" / "svf_accel.v").read_text()
    assert "module svf_accel(" in v and "m_axi_araddr" in v and "s_axil_awaddr" in v
    # the CONV accumulators are DSP48E2 primitives (SIMD adders, no multiplier) for Vivado
    assert v.count("  DSP48E2 #(") == PRODUCTION.dsps and v.count('.USE_MULT("NONE")') == PRODUCTION.dsps
    assert (d / "vivado" / "build.tcl").read_text().count("zynq_ultra_ps_e") >= 1
    assert (d / "vivado" / "svf_accel.v").read_text() == v
    prog = json.loads((d / "program" / "program.json").read_text())
    assert prog["isa_version"] == m["zcu104"]["isa_version"] == isa.VERSION and prog["plan"] == "chip"
    img = np.fromfile(d / "program" / "ddr_image.bin", np.uint8)
    assert img.size == prog["image_file_bytes"] == prog["regions"]["input"]["offset"] < prog["image_bytes"]
    assert img[:128].view("<u4")[1] == prog["magic"]
    assert (d / "driver" / "driver.py").exists() and (d / "driver" / "isa.py").exists()
    html = (d / "zcu104.html").read_text()
    assert html.count("<table>") == 4 and "data:image/png;base64," in html
    md = (d / "zcu104.md").read_text()
    assert "| layer | unit | dense adds | cycles (dense bound) | cycles (golden clip) |" in md
    assert "250 MHz is the configuration's target, not a timing result" in md
    # per layer, the golden clip's exact cycles: at most the dense bound, below it where a
    # conv skips empty bundles, summing to the manifest's golden-clip total
    rows = [r.split(" | ") for r in md.split("## Per layer")[1].splitlines() if r.startswith("| ")][1:]
    dense = [int(r[3].replace(",", "")) for r in rows]
    clip = [int(r[4].replace(",", "")) for r in rows]
    assert all(c <= dd for c, dd in zip(clip, dense)) and sum(c < dd for c, dd in zip(clip, dense)) >= 5
    assert sum(clip) == m["latency"]["golden_clip_cycles"] and sum(dense) == m["latency"]["cycles"]


def test_latency_and_resources_in_the_manifest(out):
    _, m, _ = out
    lat, res = m["latency"], m["resources"]
    assert lat["cycles"] > lat["ideal_cycles"] > 0 and lat["clock_mhz"] == 250.0
    assert "no timing analysis" in lat["clock"]             # a target clock, said so
    assert lat["ms_per_clip"] == pytest.approx(lat["cycles"] / 250e3, rel=1e-3)
    by = lat["cycles_by_unit"]
    assert sum(by.values()) == lat["cycles"] and by["CONV"] > 0 and by["SDHA"] > 0 and by["HEADER"] > 0
    assert lat["golden_clip_cycles"] < lat["cycles"]       # exact for the clip: all-zero T-bundles skipped
    # DDR latency per burst prices in: strictly slower, and 0 cycles is the dense bound itself
    ms = lat["ddr_latency_ms"]
    assert list(ms) == ["0", "16", "32"] and ms["0"] == pytest.approx(lat["ms_per_clip"], abs=1e-4)
    assert ms["0"] < ms["16"] < ms["32"]
    assert res["multipliers"] == 0 and res["dsp"] == PRODUCTION.dsps   # DSP48E2 SIMD adders only
    assert all(res[k] <= res["capacity"][k] for k in ("lut", "ff", "bram36", "uram", "dsp"))
    assert 0 < min(m["zcu104"]["bundle_sparsity"].values()) <= max(m["zcu104"]["bundle_sparsity"].values()) < 1


def test_unsupported_node_writes_nothing(tmp_path):
    import torch

    from svf_deploy.compiler import ir
    from svf_deploy.targets import TargetContext
    from svf_deploy.targets import zcu104

    x = ir.Input("input", (), shape=(1, 4, 4))
    c = ir.Conv("c", ("input",), weight=np.ones((4, 1, 1, 1), np.int64), out_scale=np.ones(4))
    s = ir.IntLIF("s", ("c",), theta=np.full(4, 2), bias=np.zeros(4, np.int64),
                  polarity=np.ones(4, np.int64), levels=3, reset="soft")
    g = ir.Graph((x, c, s), ("s",), "integer", {"T": 2})
    ctx = TargetContext(tmpdir=tmp_path, graph=g, model=None, golden_frames=torch.zeros(2, 1, 1, 4, 4),
                        golden=None)
    with pytest.raises(HardwareError, match=r"IntLIF 's': levels=3"):
        zcu104.build(ctx)
    assert list(tmp_path.iterdir()) == []


def test_factored_depthwise_refused_naming_the_option(tmp_path):
    # the CLI's --factor-depthwise auto keeps depthwise convs, which the engine does not run
    outdir = tmp_path / "o"
    r = subprocess.run([str(Path(sys.executable).parent / "svf-compile"), "--target", "zcu104",
                        "--factor-depthwise", "auto", "--clips", "2", "--quiet", "-o", str(outdir)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == HardwareError.exit_code, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("svf-compile: error: Conv ") and "groups=" in last and "--factor-depthwise never" in last
    assert not outdir.exists() and list(tmp_path.iterdir()) == []


def test_configuration_that_does_not_fit_is_refused():
    from svf_deploy.targets.zcu104 import check_fits, estimate_resources
    from svf_deploy.hw.accel import AccelConfig

    big = estimate_resources(AccelConfig(name="big", p_o=512, p_t=32, act_depth=1 << 20))
    with pytest.raises(HardwareError, match="does not fit the XCZU7EV.*lut"):
        check_fits(big | {"capacity": {}})


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    import torch

    from svf_deploy.models import build_model
    from svf_deploy.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(build_model("svf-tiny"), tmp_path_factory.mktemp("ck") / "m.pt")


def test_a_model_too_big_for_the_chip_plan_compiles_ddr_resident(tiny_ckpt, tmp_path):
    d = tmp_path / "out"
    r = subprocess.run([str(EXE), str(tiny_ckpt), "--target", "zcu104", "--img-size", "64", "--clips", "1",
                        "-o", str(d), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((d / "manifest.json").read_text())
    prog = json.loads((d / "program" / "program.json").read_text())
    assert m["zcu104"]["plan"] == prog["plan"] == "ddr" and prog["regions"]["scratch"]["bytes"] > 0
    lat = m["latency"]
    assert lat["cycles"] >= lat["golden_clip_cycles"] > lat["ideal_cycles"] > 0
    assert "DDR-resident" in (d / "zcu104.md").read_text()


def _refused_verify(ckpt, tmp_path, size: int) -> str:
    """``svf-compile CKPT --target zcu104 --verify rtl`` at ``size``: exit 14, nothing written;
    the one error line."""
    d = tmp_path / "out"
    r = subprocess.run([str(EXE), str(ckpt), "--target", "zcu104", "--img-size", str(size), "--clips", "1",
                        "--verify", "rtl", "-o", str(d), "--quiet"], capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == HardwareError.exit_code and len(errors) == 1, r.stderr
    assert "drop --verify rtl" in errors[0] and "Traceback" not in r.stderr
    assert not d.exists()
    return errors[0]


def test_verify_rtl_refused_up_front_when_verilator_would_take_too_long(tiny_ckpt, tmp_path):
    from svf_deploy.targets.zcu104 import MAX_VERIFY_MINUTES, VERILATOR_CYCLES_PER_S

    # 352x352: ~62 M dense cycles on the CI engine, ~26 simulated minutes
    err = _refused_verify(tiny_ckpt, tmp_path, 352)
    assert "simulated minutes" in err
    cycles = int(err.split("up to ")[1].split(" cycles")[0].replace(",", ""))
    assert cycles > MAX_VERIFY_MINUTES * 60 * VERILATOR_CYCLES_PER_S


def test_verify_rtl_refused_up_front_when_the_image_exceeds_the_simulated_ddr(tiny_ckpt, tmp_path):
    from svf_deploy.sim.accel import DDR_BYTES

    # 192x192: within the time limit (~18 M cycles) but a ~15 MB DDR image
    err = _refused_verify(tiny_ckpt, tmp_path, 192)
    assert "simulated DDR holds" in err
    assert int(err.split("DDR image is ")[1].split(" bytes")[0].replace(",", "")) > DDR_BYTES


def test_golden_clip_cycles_equal_a_fresh_reference_run(out):
    """The manifest's golden-clip cycles (from the golden record and the input codes) equal
    the cycle model fed by a new reference run on the stored golden clip."""
    import torch

    from svf_deploy.compiler import ir
    from svf_deploy.hw.accel import PRODUCTION
    from svf_deploy.hw.accel.cycles import conv_inputs, program_cycles
    from svf_deploy.hw.accel.program import emit
    from svf_deploy.targets.zcu104 import golden_values

    d, m, _ = out
    graph = ir.Graph.load(d)
    frames = torch.from_numpy(np.load(d / "golden.npz")["frames"])
    prog = emit(graph, PRODUCTION)
    src = [graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV]
    cycles, _ = program_cycles(prog, inputs=conv_inputs(prog, graph, golden_values(graph, frames, src)))
    assert m["latency"]["golden_clip_cycles"] == cycles < m["latency"]["cycles"]    # below the dense bound


def test_the_target_looks_up_yosys_results_under_the_hash_synthesis_uses():
    from svf_deploy.hw.accel import CI
    from svf_deploy.hw.accel.engine import Engine
    from svf_deploy.hw.accel.verilog import skip_zero_meminit
    from svf_deploy.hw.accel.verilog import to_verilog as accel_verilog
    from svf_deploy.hw.synth import rtl_hash, strip_zero_init, to_verilog
    from svf_deploy.targets.zcu104 import RTL_NAME, synth_text

    with skip_zero_meminit():
        synth = strip_zero_init(to_verilog(Engine(CI, dsp_instance=True), "top"))
    target = strip_zero_init(synth_text(accel_verilog(Engine(CI, dsp_instance=True), RTL_NAME)))
    assert rtl_hash(target) == rtl_hash(synth)
