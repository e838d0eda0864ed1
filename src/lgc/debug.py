"""LGC_DEBUG levels and LGC_DUMP.

LGC_DEBUG=1 prints cache misses and pass timings, 2 adds the IR after tracing and after each
pass, 3 adds generated source, 4 adds compile times per kernel. LGC_DUMP=dir writes the same
text to files in `dir` instead of stderr.
"""

from __future__ import annotations

import os
import re
import sys


def level() -> int:
    try:
        return int(os.environ.get("LGC_DEBUG", "0"))
    except ValueError:
        return 0


def dump(title: str, text: str) -> None:
    folder = os.environ.get("LGC_DUMP")
    if folder:
        os.makedirs(folder, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", title).strip("_") or "dump"
        with open(os.path.join(folder, f"{name}.txt"), "w") as f:
            f.write(text + "\n")
    else:
        print(f"--- {title} ---\n{text}", file=sys.stderr)
