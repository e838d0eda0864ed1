"""The docs stay true: the porting guide covers every public name of the API contract, the API
reference matches the docstrings, and the code blocks of the walk-throughs run and print what
the pages show."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lgc

ROOT = Path(__file__).resolve().parents[1]
API = ROOT.parent / "shared" / "API.md"
if not API.exists():  # a checkout outside the shared workspace
    API = Path("/work/shared/API.md")
PORTING = ROOT / "docs" / "porting.md"


def backticked_tokens(text: str) -> set[str]:
    """Identifiers (dotted names whole and split) inside `...` spans."""
    tokens = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        for tok in re.findall(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", span):
            tokens.add(tok)
            tokens.update(tok.split("."))
    return tokens


def contract_names(api_text: str) -> set[str]:
    """The public names of API.md: exported functions and classes, MATLAB properties
    (`net.Learnables`), name-value options (`Padding=`) and trainingOptions' options."""
    exported = set(lgc.__all__)
    names = set()
    for span in re.findall(r"`([^`]+)`", api_text):
        for tok in re.findall(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", span):
            parts = tok.split(".")
            if parts[0] == "lgc" and len(parts) > 1:
                parts = parts[1:]
            if parts[0] in exported:
                names.add(parts[0])
            elif len(parts) == 2 and parts[0] in ("net", "lg", "info", "T", "X", "step"):
                names.add(parts[1])  # a property: Learnables, Connections, fmt, iteration...
        names.update(o for o in re.findall(r"\b([A-Z][A-Za-z0-9]+)\s*=", span))
    options = re.search(r"`trainingOptions\((.*?)\)`", api_text, flags=re.S)
    if options:
        names.update(re.findall(r"\b([A-Z][A-Za-z0-9]+)\b", options.group(1)))
    return names


def missing_from(guide: str, api_text: str) -> list[str]:
    have = backticked_tokens(guide)
    return sorted(n for n in contract_names(api_text) if n not in have)


@pytest.fixture(scope="module")
def api_text() -> str:
    if not API.exists():
        pytest.skip("the API contract (shared/API.md) is not in this checkout")
    return API.read_text()


def test_contract_names_are_found(api_text):
    names = contract_names(api_text)
    for expected in ("adamupdate", "convolution2dLayer", "dlfeval", "Learnables", "State",
                     "Padding", "RetainData", "InitialLearnRate", "compile_train_step",
                     "Connections", "History"):
        assert expected in names
    assert len(names) > 120


def test_porting_guide_has_every_public_name_of_the_api(api_text):
    missing = missing_from(PORTING.read_text(), api_text)
    assert not missing, f"docs/porting.md lacks a row for: {', '.join(missing)}"


def test_the_coverage_check_catches_a_missing_row(api_text):
    guide = PORTING.read_text()
    without = "\n".join(ln for ln in guide.splitlines() if "sgdmupdate" not in ln)
    assert missing_from(without, api_text) == ["sgdmupdate"]


def test_porting_guide_states_the_deliberate_differences():
    guide = PORTING.read_text()
    for topic in ("0-based", "row-major", "in place", "Training=False", "ReturnIndices=True",
                  "keyword"):
        assert topic in guide, topic


def test_api_reference_is_generated_from_the_current_docstrings():
    text = _load_tool("gen_api_docs").render()
    for name in lgc.__all__:
        assert f"`{name}" in text or f"`lgc.{name}`" in text, name
    current = (ROOT / "docs" / "api.md").read_text()
    assert current == text, "docs/api.md is out of date: run python tools/gen_api_docs.py"


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOC_BLOCKS = _load_tool("run_doc_blocks")  # the page parser that regenerates the pages
RUN_IN_PROCESS = ["docs/design.md", "docs/getting-started.md", "docs/networks.md",
                  "docs/training.md"]
RUN_UNDER_CUDASIM = ["docs/cuda.md"]  # a subprocess: this one never imports numba.cuda


def test_every_docs_page_with_python_blocks_is_run():
    """A new page with examples must be added here (README.md: tests/test_cli.py)."""
    with_blocks = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")
                   if DOC_BLOCKS.blocks(p.read_text())}
    assert with_blocks == set(RUN_IN_PROCESS + RUN_UNDER_CUDASIM)


def test_the_page_parser_reads_indented_blocks_and_their_output():
    page = ("```python\nprint(1)\n```\n\n```text\n1\n```\n\n- item\n\n"
            "  ```python\n  for i in (2, 3):\n      print(i)\n  ```\n\n  ```text\n  2\n  3\n"
            "  ```\n\n```python\nx = 1  # output varies\n```\n\n```text\nanything\n```\n")
    blocks = DOC_BLOCKS.blocks(page)
    assert [(b.code, b.shown, b.checked) for b in blocks] == [
        ("print(1)\n", "1\n", True), ("for i in (2, 3):\n    print(i)\n", "2\n3\n", True),
        ("x = 1  # output varies\n", "anything\n", False)]
    new, stale = DOC_BLOCKS.regenerate(page, "page")
    assert new == page and not stale
    new, stale = DOC_BLOCKS.regenerate(page.replace("  3\n", "  4\n"), "page")
    assert new == page and len(stale) == 1 and "page block 2" in stale[0]


@pytest.mark.parametrize("doc", RUN_IN_PROCESS)
def test_doc_code_blocks_run_and_print_what_the_page_shows(doc, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    blocks = DOC_BLOCKS.blocks((ROOT / doc).read_text())
    assert len(blocks) >= 3, f"{doc} lost its examples"
    namespace = {"__name__": "doc_example"}
    for k, block in enumerate(blocks):
        printed = DOC_BLOCKS.run_block(block, namespace, doc, k)
        if block.checked:
            assert printed == block.shown, (f"{doc} block {k + 1} printed something else than "
                                            f"the page shows; run python "
                                            f"tools/run_doc_blocks.py {doc}")


@pytest.mark.parametrize("doc", RUN_UNDER_CUDASIM)
def test_cuda_doc_code_blocks_run_under_the_simulator(doc):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_ENABLE_CUDASIM"] = "1"
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda"], env=env,
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("numba.cuda cannot be imported in this environment")
    assert len(DOC_BLOCKS.blocks((ROOT / doc).read_text())) >= 2, f"{doc} lost its examples"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "run_doc_blocks.py"), "--check",
                        str(ROOT / doc)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (f"{doc} is stale or fails under the simulator; run "
                               f"NUMBA_ENABLE_CUDASIM=1 python tools/run_doc_blocks.py {doc}\n"
                               + r.stdout[-4000:] + r.stderr[-4000:])
