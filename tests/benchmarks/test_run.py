"""The benchmark harness runs (quick subset) and writes a page with real figures."""

import re

import pytest


@pytest.fixture(scope="module")
def bench(bench_script):
    return bench_script("run")


def test_fit_exponent_recovers_power_laws(bench):
    xs = [2, 4, 8, 16, 32]
    assert bench.fit_exponent(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert bench.fit_exponent(xs, [0.5 * x * x for x in xs]) == pytest.approx(2.0)


def test_stat_orders_and_formats(bench):
    s = bench.Stat([3.0, 1.0, 2.0])
    assert (s.min, s.median, s.max) == (1.0, 2.0, 3.0)
    assert s.fmt() == "1 / 2 / 3"


def test_quick_run_writes_page(bench, tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    assert bench.main(["--quick", "--only", "executors", "compile", "scaling", "accuracy", "-o", str(out)]) == 0
    text = out.read_text()
    assert "| svf-tiny (bundled) |" in text and "versions" in text
    row = next(line for line in text.splitlines() if line.startswith("| svf-tiny (bundled)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    t_float, t_ref = float(cells[2]), float(cells[3])
    assert t_float > 0 and t_ref > 0
    # the ratio is of the unrounded medians: within rounding of the 3 shown digits
    assert abs(float(cells[4][:-1]) / (t_float / t_ref) - 1) < 0.02
    # accuracy rows hold percentages for each bit width, and the plot exists
    accs = re.findall(r"^\| (4|8) \| ([\d.]+) % \| ([\d.]+) %", text, re.M)
    assert [a[0] for a in accs] == ["4", "8"]
    assert all(0 <= float(a[2]) <= 100 for a in accs)
    assert (tmp_path / "bench-accuracy.png").stat().st_size > 1000
    # the scaling tables end in a fitted exponent (a finite number) for T and for pixels
    exps = re.findall(r"^\| exponent p \(in (T|pixels)\) \| (-?[\d.]+) \| (-?[\d.]+) \|", text, re.M)
    assert [e[0] for e in exps] == ["T", "pixels"]


def test_hardware_core_speeds_cover_the_catalogue(bench):
    """The hardware section's per-core Verilator speed runs every catalogue core (the build is
    the cached one of tests/sim) and checks each core's outputs while it measures."""
    import hw_section
    from svf_deploy.sim.catalogue import CORES

    rows = hw_section.core_speeds(1, beats_per_core=40)
    assert [r[0] for r in rows] == list(CORES)
    for name, beats, _, per_s in rows:
        assert int(beats.replace(",", "")) >= 40 and float(per_s.replace(",", "")) > 0, name
