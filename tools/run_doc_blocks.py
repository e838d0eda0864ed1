"""Run the ```python blocks of a docs page in order and rewrite the ```text block after each
with what it really printed, so the walk-throughs show real output.

    python tools/run_doc_blocks.py docs/design.md [docs/getting-started.md ...]
    python tools/run_doc_blocks.py --check docs/cuda.md     # exit 1 if a text block is stale
    NUMBA_ENABLE_CUDASIM=1 python tools/run_doc_blocks.py docs/cuda.md   # the CUDA page

A block containing the comment `# output varies` (timings) keeps its text block as written.
Blocks may be indented (inside a list item): the code is dedented to run and the output is
written back at the same indentation. All blocks of a page share one namespace and run in a
temporary folder. tests/test_docs.py runs the same blocks and fails when a page's text blocks
are stale (docs/cuda.md in a subprocess under Numba's CUDA simulator).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

# A python block, optionally followed (after one blank line) by a text block at the same
# indentation; the text block's content group is None when there is none.
PAIR = re.compile(r"^(?P<ind>[ ]*)```python\n(?P<code>.*?)^(?P=ind)```\n"
                  r"(?:\n(?P=ind)```text\n(?P<shown>.*?)^(?P=ind)```\n)?", re.S | re.M)
VARIES = "# output varies"


class Block(NamedTuple):
    code: str  # dedented, ready to exec
    shown: str | None  # the text block's content, dedented; None when there is none
    indent: str
    start: int
    end: int

    @property
    def checked(self) -> bool:
        return self.shown is not None and VARIES not in self.code


def _dedent(text: str, indent: str) -> str:
    return "".join(ln[len(indent):] if ln.startswith(indent) else ln.lstrip(" ")
                   for ln in text.splitlines(keepends=True))


def _indent(text: str, indent: str) -> str:
    return "".join(indent + ln if ln.strip() else ln for ln in text.splitlines(keepends=True))


def blocks(text: str) -> list[Block]:
    """The ```python blocks of a page, each with the ```text block right after it."""
    out = []
    for m in PAIR.finditer(text):
        ind = m.group("ind")
        shown = m.group("shown")
        out.append(Block(_dedent(m.group("code"), ind),
                         None if shown is None else _dedent(shown, ind), ind,
                         m.start(), m.end()))
    return out


def run_block(block: Block, namespace: dict, name: str, k: int) -> str:
    """Exec one block in the page's namespace; what it printed, ending in a newline."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(block.code, f"{name} block {k + 1}", "exec"), namespace)  # noqa: S102
    printed = buf.getvalue()
    return printed if printed.endswith("\n") or not printed else printed + "\n"


def regenerate(text: str, name: str) -> tuple[str, list[str]]:
    """The page with every checked text block replaced by what its python block printed, and
    a unified diff per stale block."""
    namespace = {"__name__": "doc_example"}
    out, stale, pos = [], [], 0
    for k, b in enumerate(blocks(text)):
        printed = run_block(b, namespace, name, k)
        out.append(text[pos:b.start])
        out.append(f"{b.indent}```python\n{_indent(b.code, b.indent)}{b.indent}```\n")
        if b.shown is not None:
            if not b.checked:
                printed = b.shown if b.shown.endswith("\n") or not b.shown else b.shown + "\n"
            elif printed != b.shown:
                stale.append(f"{name} block {k + 1}:\n" + "".join(difflib.unified_diff(
                    b.shown.splitlines(keepends=True), printed.splitlines(keepends=True),
                    "page", "printed")))
            out.append(f"\n{b.indent}```text\n{_indent(printed, b.indent)}{b.indent}```\n")
        pos = b.end
    out.append(text[pos:])
    return "".join(out), stale


def main(argv=None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    check = "--check" in args
    paths = [Path(p).resolve() for p in args if p != "--check"]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    os.environ.setdefault("LGC_BACKEND", "reference")  # as in the test suite
    failed = False
    for path in paths:
        with tempfile.TemporaryDirectory() as tmp:
            cwd = os.getcwd()
            os.chdir(tmp)  # blocks that write files write them here
            try:
                new, stale = regenerate(path.read_text(), path.name)
            finally:
                os.chdir(cwd)
        if check:
            for diff in stale:
                print(diff)
            failed = failed or bool(stale)
            print(f"{path}: {'STALE' if stale else 'ok'}")
            continue
        changed = new != path.read_text()
        path.write_text(new)
        print(f"{path}: {'updated' if changed else 'unchanged'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
