"""tools/bench.py --quick: lgc and every installed peer agree on the losses of a train step.

Runs the benchmark in-process on tiny sizes, on the reference and the Numba backends. It
checks numbers, never time.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def bench():
    if "bench" in sys.modules and getattr(sys.modules["bench"], "__file__", "") == str(
            TOOLS / "bench.py"):
        return sys.modules["bench"]
    spec = importlib.util.spec_from_file_location("bench", TOOLS / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# JAX compiles each tiny model for seconds: it is compared once, on the reference backend
@pytest.mark.parametrize("backend, peers", [("reference", "lgc,lgc_eager,torch,jax"),
                                            ("numba", "lgc,lgc_eager,torch")])
def test_quick_agrees_with_peers(bench, backend, peers, tmp_path, capsys):
    out = tmp_path / "quick.json"
    code = bench.main(["--quick", "--no-extras", "--backend", backend, "--peers", peers,
                       "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["backend"] == backend and res["quick"]
    assert [r["workload"] for r in res["workloads"]] == bench.NAMES
    for row in res["workloads"]:
        lgc_losses = row["lgc"]["losses"]
        assert row["lgc"]["status"] == "ok" and len(lgc_losses) == 2
        assert lgc_losses[1] != lgc_losses[0], f"{row['workload']}: the update changed nothing"
        for c in peers.split(",")[1:]:
            if not _installed(c.split("_")[0]):
                assert row[c] == {"status": "not installed"}
                continue
            assert row[c]["status"] == "ok", (row["workload"], c, row[c])
            assert row[c]["agree"] is True, (row["workload"], c, lgc_losses, row[c]["losses"])
        assert "torch_compile" not in row  # too slow to compile for --quick
    png = tmp_path / "ratios.png"
    assert bench.main(["--report", str(out), "--plot", str(png)]) == 0
    table = capsys.readouterr().out.split("ms per train step")[1]
    assert all(f"| {name} | " in table for name in bench.NAMES)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_disagreement_is_reported(bench):
    assert bench.agree([2.0, 1.5], [2.0, 1.5 * (1 + 1e-4)])
    assert not bench.agree([2.0, 1.5], [2.0, 1.6])


def test_unknown_workload_is_refused(bench, capsys):
    assert bench.main(["--quick", "nosuch"]) == 2
    assert "unknown workload" in capsys.readouterr().err


def test_limits_quick(bench):
    lim = bench.limits(quick=True)
    assert lim["triad_GBps"] > 0 and lim["gemm_GFLOPs"] > 0
    assert lim["adam_lgc_ms"] > 0 and lim["adam_kernel_ms"] > 0


def test_rounds_interleave_contenders_and_report_the_median(bench, monkeypatch, capsys):
    """--rounds: a cold start, then every contender once per round, in turn; each figure is
    the median of its rounds, a peer that is not installed is asked once."""
    calls, ms = [], {"lgc": iter([3.0, 1.0, 2.0]), "torch": iter([4.0, 8.0, 2.0])}

    def fake_worker(contender, name, args, cache=None, reps=None, **kw):
        calls.append(contender if reps is None else f"{contender} cold")
        if contender == "jax":
            return {"status": "not installed"}
        return {"status": "ok", "ms": 99.0 if reps else next(ms[contender]), "losses": [2.0, 1.5],
                "first_step_s": 0.1, "process_s": 1.0, "peak_rss_mb": 10.0, "rss_before_mb": 5.0}

    monkeypatch.setattr(bench, "worker", fake_worker)
    args = bench._parser().parse_args(["mlp", "--rounds", "3", "--peers", "lgc,torch,jax"])
    (row,) = bench.run_full(["mlp"], ["lgc", "torch", "jax"], args)
    assert calls == ["lgc cold", "lgc", "torch", "jax", "lgc", "torch", "lgc", "torch"]
    assert row["lgc"]["ms"] == 2.0 and row["lgc"]["ms_rounds"] == [3.0, 1.0, 2.0]
    assert row["torch"]["ms"] == 4.0 and row["torch"]["ratio"] == 0.5
    assert row["torch"]["agree"] is True and row["jax"] == {"status": "not installed"}
    results = {"machine": {"cpu": "x", "cores": 2, "memory_GiB": 1, "python": "3", "versions": {},
                           "loadavg": [0.0]}, "backend": "numba", "reps": 5, "rounds": 3,
               "workloads": [row]}
    table = bench._report().markdown(results)
    assert "median of 3 such processes" in table and "| mlp | 3, 1, 2 | - | 4, 8, 2 |" in table


def test_against_alternates_the_revisions_and_reports_the_change(bench, monkeypatch, capsys):
    """--against REV: every round runs REV's lgc, then the working tree's, each in a fresh
    process on the other's heels; the line gives both medians and the change in percent."""
    calls, ms = [], {"/rev/src": iter([2.0, 4.0, 3.0]), None: iter([1.0, 2.0, 1.5])}

    def fake_worker(contender, name, args, cache=None, reps=None, src=None, **kw):
        calls.append((contender, name, src))
        return {"status": "ok", "ms": next(ms[src]), "lgc_path": "/rev" if src else "/here"}

    monkeypatch.setattr(bench, "worker", fake_worker)
    args = bench._parser().parse_args(["mlp", "--against", "abc", "--rounds", "3"])
    (row,) = bench.compare_rounds(["mlp"], {"abc": "/rev/src", "working tree": None}, args)
    assert calls == [("lgc", "mlp", "/rev/src"), ("lgc", "mlp", None)] * 3
    assert row["ms"] == {"abc": 3.0, "working tree": 1.5}
    assert "abc 3 ms -> working tree 1.5 ms (-50.0 %)" in capsys.readouterr().out

    calls.clear()  # --peers lgc_eager: the dlfeval + adamupdate loop instead
    ms = {"/rev/src": iter([2.0]), None: iter([1.0])}
    args = bench._parser().parse_args(["mlp", "--against", "abc", "--peers", "lgc_eager"])
    bench.compare_rounds(["mlp"], {"abc": "/rev/src", "working tree": None}, args)
    assert calls == [("lgc_eager", "mlp", "/rev/src"), ("lgc_eager", "mlp", None)]

    def wrong_lgc(contender, name, args, cache=None, reps=None, src=None, **kw):
        return {"status": "ok", "ms": 1.0, "lgc_path": "/installed"}

    monkeypatch.setattr(bench, "worker", wrong_lgc)
    with pytest.raises(SystemExit, match="imported lgc from /installed"):
        bench.compare_rounds(["mlp"], {"abc": "/rev/src", "working tree": None}, args)


def test_profile_times_steps_and_the_calls_inside_runs(bench, capsys):
    """--profile: every step of the compiled train step timed from Python, then each call
    inside the runs of prepared calls by the cycles the pool records (on tiny sizes)."""
    pytest.importorskip("numba")
    bench.main(["--profile", "mlp", "--quick", "--reps", "5", "--top", "30"])
    text = capsys.readouterr().out
    head, runs = text.split("inside the runs (")
    assert "matmul" in head and "vjp(fullyconnect)" in head
    calls = [line for line in runs.splitlines()[2:] if line.strip()]
    assert calls and any("adam_update" in line for line in calls)
    assert all(float(line.split()[0]) >= 0 for line in calls)
    assert sum(float(line.split()[0]) for line in calls) > 0


def test_profile_labels_a_step_by_its_largest_output(bench, capsys):
    """An LSTM's backward kernel, its dZ, dh0 and dc0 pruned to empty arrays on data with
    constant initial states, is labelled by its largest output (dR: 4H x H = 32x8 on the quick
    sizes), not an empty one."""
    pytest.importorskip("numba")
    bench.main(["--profile", "lstm", "--quick", "--reps", "3", "--top", "40"])
    head = capsys.readouterr().out.split("inside the runs (")[0]
    (line,) = [ln for ln in head.splitlines() if "lstm_seq_backward" in ln]
    assert line.split()[4] == "32x8", line
