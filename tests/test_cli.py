"""The `lgc` command: every subcommand on examples/networks.py, exit codes 0/1/2 with one line
on stderr, `lgc demo --quick`, and the README's quick start and example."""

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lgc import __version__, cli
from lgc.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = str(ROOT / "examples" / "networks.py")
SVG = "{http://www.w3.org/2000/svg}"


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def svg_groups(path: Path, kind: str) -> list[str]:
    root = ET.fromstring(path.read_bytes())
    return [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("class") == kind]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lgc"), captured.err
    return lines[0]


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: lgc" in out
    assert all(name in out for name in ("demo", "inspect", "plot", "ir", "bench", "cache"))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    assert main([name, "--help"]) == 0
    assert f"usage: lgc {name}" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lgc {__version__}"


@pytest.mark.parametrize("argv", [
    ["demo", "--epochs", "0"],
    ["demo", "--epochs", "many"],
    ["demo", "--bogus"],
    ["demo", "--quick", "--epochs", "3"],
    ["demo", "--solver", "lbfgs"],
    ["no-such-command"],
    [],
    ["inspect"],
    ["inspect", "no/such/file.py"],
    ["inspect", "examples/networks.txt"],
    ["inspect", NETWORKS + ":nothing_here"],
    ["inspect", NETWORKS + ":model"],
    ["inspect", NETWORKS + ":1bad"],
    ["plot", NETWORKS],
    ["plot", NETWORKS, "-o", "x.svg", "--stage", "kernels"],
    ["plot", NETWORKS + ":model_loss", "-o", "x.svg", "--stage", "layers"],
    ["plot", NETWORKS + ":model", "-o", "x.svg", "--stage", "grad"],
    ["plot", NETWORKS + ":chain", "-o", "x.png", "--format", "pdf"],
    ["plot", NETWORKS + ":chain", "-o", "x.gif"],
    ["ir", NETWORKS],
    ["ir", NETWORKS + ":no_function"],
    ["cache"],
    ["cache", "wipe"],
])
def test_bad_arguments_exit_2_with_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(argv) == 2
    one_error_line(capsys)


def test_runtime_failure_exits_1_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["demo", "--quick", "--out", str(blocker)]) == 1
    assert "not a folder" in one_error_line(capsys)
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1 / 0\n")
    assert main(["inspect", str(bad)]) == 1
    assert "ZeroDivisionError" in one_error_line(capsys)


def test_inspect_prints_the_analysis_table(capsys):
    assert main(["inspect", NETWORKS]) == 0  # the first network variable: `chain`
    out = capsys.readouterr().out
    assert "Network analysis: 5 layers" in out and "2-D Convolution" in out
    assert main(["inspect", NETWORKS + ":residual"]) == 0  # a function returning a graph
    out = capsys.readouterr().out
    assert "Network analysis: 12 layers" in out and "Addition" in out and "No issues." in out


def test_inspect_of_an_invalid_network_prints_the_issues_and_exits_1(capsys):
    assert main(["inspect", NETWORKS + ":broken"]) == 1
    captured = capsys.readouterr()
    assert "input 'in2' of 'add' (Addition) is not connected" in captured.out
    assert captured.err.strip() == "lgc inspect: the network has 1 error (listed above)"


def test_plot_layers_writes_one_node_per_layer(tmp_path, capsys):
    out = tmp_path / "residual.svg"
    assert main(["plot", NETWORKS + ":residual", "-o", str(out)]) == 0
    assert sorted(svg_groups(out, "node")) == sorted(
        ["input", "conv_1", "bn_1", "relu_1", "conv_2", "bn_2", "relu_2", "conv_3", "add",
         "relu_3", "fc", "softmax"])
    assert len(svg_groups(out, "edge")) == 12
    assert str(out) in capsys.readouterr().out
    png = tmp_path / "chain"
    assert main(["plot", NETWORKS + ":chain", "-o", str(png), "--format", "png"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("target", ["model_loss", "residual"])
@pytest.mark.parametrize("stage", ["ir", "grad", "fused"])
def test_plot_ir_stages_of_a_function_and_of_a_network(target, stage, tmp_path):
    out = tmp_path / f"{target}_{stage}.svg"
    assert main(["plot", f"{NETWORKS}:{target}", "-o", str(out), "--stage", stage]) == 0
    nodes = svg_groups(out, "node")
    assert len(nodes) > 5
    clusters = svg_groups(out, "cluster")
    assert bool(clusters) == (stage == "fused")


def test_ir_prints_every_stage_and_the_kernel_source(capsys):
    assert main(["ir", NETWORKS + ":model_loss", "--source"]) == 0
    out = capsys.readouterr().out
    titles = re.findall(r"^== (.*?)(?::| ==)", out, flags=re.M)
    assert titles == ["traced (lgc.trace)", "gradient (the nodes dlgradient emitted)",
                      "optimized and fused", "stats", "generated kernel source"]
    assert "func @model_loss(" in out and "vjp(softmax)" in out and "= fused(" in out
    assert "def kernel(" in out


def test_ir_finds_function_inputs_before_example_inputs(capsys):
    # `model` takes (p, X): its arguments come from model_inputs(), not example_inputs()
    assert main(["ir", NETWORKS + ":model", "--backend", "reference"]) == 0
    out = capsys.readouterr().out
    assert "func @model(%p.W1: f32[8,4]" in out and "gradient" not in out
    assert "generated kernel source" not in out


def test_bench_runs_tools_bench_main_with_quick(tmp_path, monkeypatch, capsys):
    assert cli.find_bench() == ROOT / "tools" / "bench.py"
    script = tmp_path / "tools" / "bench.py"
    script.parent.mkdir()
    script.write_text("def main(argv=None):\n    print('bench argv', argv)\n    return 0\n")
    monkeypatch.setattr(cli, "find_bench", lambda: script)
    assert main(["bench", "--quick", "mlp", "--reps", "2"]) == 0
    assert capsys.readouterr().out.strip() == "bench argv ['--quick', 'mlp', '--reps', '2']"
    # bench's own options may come first too; other commands still refuse unknown options
    assert main(["bench", "--quick", "--no-extras", "mlp"]) == 0
    assert capsys.readouterr().out.strip() == "bench argv ['--quick', '--no-extras', 'mlp']"
    assert main(["inspect", "--no-extras", "x.py"]) == 2
    assert "unrecognized arguments: --no-extras" in capsys.readouterr().err
    monkeypatch.setattr(cli, "find_bench", lambda: None)
    assert main(["bench"]) == 1
    assert "tools/bench.py was not found" in one_error_line(capsys)


def test_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LGC_CACHE_DIR", str(tmp_path))
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    for k in range(3):
        (kernels / f"k_{k}.py").write_text("x = 1\n")
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "kernels:      3" in out
    assert main(["cache", "clear"]) == 0
    assert "cleared 3 cached kernels" in capsys.readouterr().out
    assert not kernels.exists()


def test_demo_quick_writes_diagrams_ir_and_training_plot(tmp_path, capsys):
    out = tmp_path / "demo-out"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["ir.txt", "ir_fused.svg", "network.svg",
                                                    "training.png"]
    assert len(svg_groups(out / "network.svg", "node")) == 9
    assert len(svg_groups(out / "ir_fused.svg", "node")) > 20
    assert svg_groups(out / "ir_fused.svg", "cluster")  # the fused kernels
    ir = (out / "ir.txt").read_text()
    assert "func @model_gradients(" in ir and "vjp(" in ir and "== stats ==" in ir
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"epoch  1  steps    3  loss \d\.\d+  test accuracy", printed)
    assert re.search(r"Test accuracy: \d+\.\d% after 3 steps", printed)
    assert str(out) in printed and "ir_fused.svg" in printed


def test_demo_learns_digits():
    import io

    from lgc.demo import train

    printed = io.StringIO()
    run = train(epochs=1, out=printed)
    assert len(run.losses) == 22 and run.epoch_accuracy[-1] > 0.9
    assert run.losses[-1] < run.losses[0] / 3
    assert printed.getvalue().startswith("epoch  1  steps   22  loss ")


def test_readme_quick_start_is_the_two_documented_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = code_blocks(quick, "sh")
    assert block.splitlines() == [
        "pip install -e . && lgc demo",
        'pip install -e ".[test]" && python -m pytest -q',
    ]
    assert 'pip install -e ".[test]" && python -m pytest -q' in (ROOT / ".ci" / "run").read_text()


def test_readme_python_examples_run(capsys, monkeypatch, tmp_path):
    readme = (ROOT / "README.md").read_text()
    blocks = code_blocks(readme, "python")
    assert len(blocks) >= 2, "README.md lost its ```python examples"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    loss = float(namespace["loss"])
    assert loss < 0.8 * math.log(3)  # it learned: below the loss of a uniform guess
    printed = capsys.readouterr().out
    comment = re.search(r"# (loss \d\.\d+)", blocks[0])
    assert comment and comment.group(1) in printed, "the README's printed loss is out of date"
    for k, block in enumerate(blocks[1:], 2):
        exec(compile(block, f"README.md block {k}", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "net.svg").exists() and isinstance(namespace["loss"], float)
    assert "Network analysis: 6 layers" in capsys.readouterr().out


def test_readme_lists_every_command():
    readme = (ROOT / "README.md").read_text()
    for name in COMMANDS:
        assert f"`lgc {name}" in readme, f"README.md does not document 'lgc {name}'"
