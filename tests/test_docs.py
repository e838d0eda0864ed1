"""The docs stay true: the porting guide covers every public name of the API contract, the API
reference matches the docstrings, and the code blocks of the walk-throughs run and print what
the pages show."""

import importlib.util
import re
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
    spec = importlib.util.spec_from_file_location("gen_api_docs",
                                                  ROOT / "tools" / "gen_api_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.render()
    for name in lgc.__all__:
        assert f"`{name}" in text or f"`lgc.{name}`" in text, name
    current = (ROOT / "docs" / "api.md").read_text()
    assert current == text, "docs/api.md is out of date: run python tools/gen_api_docs.py"


def code_blocks_with_output(text: str) -> list[tuple[str, str | None]]:
    """Each ```python block and the ```text block right after it (None when there is none)."""
    pairs = []
    pattern = re.compile(r"^```python\n(.*?)^```\n(?:\n```text\n(.*?)^```)?", re.S | re.M)
    for m in pattern.finditer(text):
        pairs.append((m.group(1), m.group(2)))
    return pairs


@pytest.mark.parametrize("doc", ["docs/design.md", "docs/getting-started.md"])
def test_doc_code_blocks_run_and_print_what_the_page_shows(doc, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    pairs = code_blocks_with_output((ROOT / doc).read_text())
    assert len(pairs) >= 3, f"{doc} lost its examples"
    namespace = {"__name__": "doc_example"}
    for k, (block, shown) in enumerate(pairs):
        exec(compile(block, f"{doc} block {k + 1}", "exec"), namespace)  # noqa: S102
        printed = capsys.readouterr().out
        printed = printed if printed.endswith("\n") or not printed else printed + "\n"
        if shown is not None and "# output varies" not in block:
            assert printed == shown, (f"{doc} block {k + 1} printed something else than the "
                                      f"page shows; run python tools/run_doc_blocks.py {doc}")
