"""The user-facing entry points: the `lgc` command, `lgc demo`, and the README's example."""

import io
import math
import re
from pathlib import Path

import pytest

from lgc import __version__
from lgc.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def test_help_lists_demo(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: lgc" in out and "demo" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    assert main([name, "--help"]) == 0
    assert f"usage: lgc {name}" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lgc {__version__}"


@pytest.mark.parametrize("argv", [
    ["demo", "--steps", "0"],
    ["demo", "--steps", "many"],
    ["demo", "--bogus"],
    ["demo", "--quick", "--steps", "3"],
    ["no-such-command"],
    [],
])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lgc"), captured.err
    assert captured.out == ""


def test_runtime_failure_exits_1_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["demo", "--quick", "--out", str(blocker)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "not a folder" in lines[0]


def test_demo_quick_writes_ir_and_loss_curve(tmp_path, capsys):
    out = tmp_path / "demo-out"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    ir = (out / "ir.txt").read_text()
    assert ir.startswith("func @model_loss(") and "matmul" in ir and "vjp(" in ir
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "func @model_loss(" in printed
    assert re.search(r"Final test accuracy: \d+\.\d%", printed)
    assert str(out) in printed and "ir.txt" in printed and "loss.png" in printed


def test_demo_learns_digits(tmp_path):
    from lgc.demo import run_demo

    result = run_demo(steps=110, out_dir=str(tmp_path), stream=io.StringIO())
    assert result.test_accuracy > 0.9
    assert result.losses[-1] < result.losses[0] / 3


def test_readme_quick_start_is_the_two_documented_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = code_blocks(quick, "sh")
    assert block.splitlines() == [
        "pip install -e . && lgc demo",
        'pip install -e ".[test]" && python -m pytest -q',
    ]
    assert 'pip install -e ".[test]" && python -m pytest -q' in (ROOT / ".ci" / "run").read_text()


def test_readme_python_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    blocks = code_blocks(readme, "python")
    assert blocks, "README.md has no ```python block"
    namespace = {"__name__": "readme_example"}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    loss = float(namespace["loss"])
    assert loss < 0.8 * math.log(3)  # it learned: below the loss of a uniform guess
    printed = capsys.readouterr().out
    comment = re.search(r"# (loss \d\.\d+)", blocks[0])
    assert comment and comment.group(1) in printed, "the README's printed loss is out of date"


@pytest.mark.parametrize("doc", ["docs/design.md", "docs/getting-started.md"])
def test_doc_python_blocks_run_in_order(doc, capsys):
    blocks = code_blocks((ROOT / doc).read_text(), "python")
    assert len(blocks) >= 3, f"{doc} lost its examples"
    namespace = {"__name__": "doc_example"}
    for k, block in enumerate(blocks):
        exec(compile(block, f"{doc} block {k + 1}", "exec"), namespace)  # noqa: S102
    assert capsys.readouterr().out.strip()
