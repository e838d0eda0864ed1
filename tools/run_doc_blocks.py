"""Run the ```python blocks of a docs page in order and rewrite the ```text block after each
with what it really printed, so the walk-throughs show real output.

    python tools/run_doc_blocks.py docs/design.md [docs/getting-started.md ...]

A block containing the comment `# output varies` (timings) keeps its text block as written.
tests/test_docs.py runs the same blocks and fails when a page's text blocks are stale.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

PAIR = re.compile(r"^```python\n(.*?)^```\n(?:\n```text\n(.*?)^```\n)?", re.S | re.M)


def regenerate(text: str, name: str) -> str:
    namespace = {"__name__": "doc_example"}
    out, pos = [], 0
    for k, m in enumerate(PAIR.finditer(text)):
        block, shown = m.group(1), m.group(2)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(block, f"{name} block {k + 1}", "exec"), namespace)  # noqa: S102
        out.append(text[pos:m.start()])
        out.append(f"```python\n{block}```\n")
        if shown is not None:
            printed = buf.getvalue() if "# output varies" not in block else shown
            printed = printed if printed.endswith("\n") else printed + "\n"
            out.append(f"\n```text\n{printed}```\n")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def main(argv=None) -> int:
    paths = [Path(p).resolve() for p in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    os.environ.setdefault("LGC_BACKEND", "reference")  # as in the test suite
    for path in paths:
        with tempfile.TemporaryDirectory() as tmp:
            cwd = os.getcwd()
            os.chdir(tmp)  # blocks that write files write them here
            try:
                new = regenerate(path.read_text(), path.name)
            finally:
                os.chdir(cwd)
        changed = new != path.read_text()
        path.write_text(new)
        print(f"{path}: {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
