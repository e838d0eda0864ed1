"""Generate docs/api.md, the API reference, from the docstrings of everything `lgc` exports.

    python tools/gen_api_docs.py          # rewrite docs/api.md
    python tools/gen_api_docs.py --check  # exit 1 when docs/api.md is out of date

tests/test_docs.py runs the check, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"

# section title -> module prefixes whose objects it lists, in order
SECTIONS = [
    ("dlarray and its functions", ("lgc.dlarray",)),
    ("Deep learning operations", ("lgc.functional", "lgc.convolution", "lgc.normalization",
                                  "lgc.recurrent")),
    ("Automatic differentiation", ("lgc.transforms",)),
    ("Compilation and inspection", ("lgc.compiler", "lgc.backend", "lgc.ir", "lgc.viz")),
    ("Layers", ("lgc.layers",)),
    ("Layer graphs and networks", ("lgc.network", "lgc.dlnetwork", "lgc.analysis", "lgc.table",
                                   "lgc.io")),
    ("Initializers", ("lgc.init",)),
    ("Optimizer updates", ("lgc.updates",)),
    ("Training", ("lgc.train",)),
    ("Random numbers", ("lgc.ops",)),
    ("Errors", ("lgc.errors",)),
]


def _module_of(obj) -> str:
    return obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "") or ""


def _section(obj) -> str:
    mod = _module_of(obj)
    for title, prefixes in SECTIONS:
        if any(mod == p or mod.startswith(p + ".") for p in prefixes):
            return title
    return "Other"


def _signature(name: str, obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return name
    return name + re.sub(r" at 0x[0-9a-f]+", "", sig)


def _doc(obj) -> str:
    doc = inspect.getdoc(obj) or "(no docstring)"
    return f"```text\n{doc}\n```"


def _members(cls) -> list[str]:
    """Public methods and properties defined by the class itself, with their first line."""
    rows = []
    for k, v in vars(cls).items():
        if k.startswith("_"):
            continue
        if isinstance(v, property | staticmethod | classmethod) or inspect.isfunction(v):
            target = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
            first = (inspect.getdoc(target) or "").split("\n\n")[0].replace("\n", " ")
            kind = "property" if isinstance(v, property) else "method"
            rows.append(f"- `{k}` ({kind}){': ' + first if first else ''}")
    return rows


def _entry(name: str, obj) -> list[str]:
    if inspect.ismodule(obj):
        lines = [f"### `lgc.{name}`", "", _doc(obj), ""]
        for k, v in vars(obj).items():
            if inspect.isfunction(v) and not k.startswith("_") and v.__module__ == obj.__name__:
                lines += [f"#### `lgc.{name}.{_signature(k, v)}`", "", _doc(v), ""]
        return lines
    if inspect.isclass(obj):
        bases = ", ".join(b.__name__ for b in obj.__bases__ if b is not object)
        lines = [f"### class `{name}`" + (f" ({bases})" if bases else ""), "", _doc(obj), ""]
        members = _members(obj)
        return lines + (members + [""] if members else [])
    return [f"### `{_signature(name, obj)}`", "", _doc(obj), ""]


def render() -> str:
    import lgc

    groups: dict[str, list[str]] = {}
    for name in sorted(lgc.__all__, key=lambda s: (s.casefold(), s)):
        obj = getattr(lgc, name)
        groups.setdefault(_section(obj), []).append(name)
    titles = [t for t, _ in SECTIONS if t in groups] + (["Other"] if "Other" in groups else [])
    lines = ["# lgc API reference", "",
             "Generated from the docstrings by `python tools/gen_api_docs.py`; do not edit by "
             "hand (`tests/test_docs.py` checks that it is current). Everything below is "
             "importable from the top level: `from lgc import ...`. For the MATLAB names side "
             "by side see [porting.md](porting.md).", ""]
    for t in titles:
        anchor = re.sub(r"[^a-z0-9 -]", "", t.lower()).replace(" ", "-")
        lines.append(f"- [{t}](#{anchor}): " + ", ".join(f"`{n}`" for n in groups[t]))
    lines.append("")
    for t in titles:
        lines += [f"## {t}", ""]
        for name in groups[t]:
            lines += _entry(name, getattr(lgc, name))
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that docs/api.md is current")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python tools/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
