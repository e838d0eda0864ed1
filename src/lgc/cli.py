"""The `lgc` command: one function per subcommand, registered with `@command` and `@arg`.

Exit codes: 0 success, 1 runtime failure (one sentence on stderr), 2 bad arguments (one
sentence on stderr). `main(argv)` returns the code instead of exiting, so tests call it
directly. To add a subcommand, write one decorated function below; `build_parser` finds it.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

from . import __version__, debug
from .errors import LgcError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str, summary: str, description: str = ""):
    """Register a subcommand `fn(args) -> exit code`; `summary` is its --help line."""
    def register(fn):
        fn.cli_name, fn.cli_summary = name, summary
        fn.cli_description = description or summary
        fn.cli_args = getattr(fn, "cli_args", [])
        COMMANDS[name] = fn
        return fn
    return register


def arg(*flags, **options):
    """Declare one argparse argument of a subcommand (same parameters as `add_argument`)."""
    def add(fn):
        # decorators apply bottom-up: prepend so --help lists arguments in source order
        fn.cli_args = [(flags, options)] + getattr(fn, "cli_args", [])
        return fn
    return add


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class ArgumentError(Exception):
    """A bad command line; its message is the one sentence shown to the user."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument raises ArgumentError instead of printing usage + exit."""

    def error(self, message: str):
        raise ArgumentError(f"{self.prog}: {message} (see '{self.prog} --help')")


# --- subcommands -----------------------------------------------------------------------------


@command("demo", "train a small MLP on scikit-learn's digits and write its IR and loss curve",
         "Train a 64-32-10 MLP on scikit-learn's 8x8 handwritten digits with dlfeval and "
         "dlgradient (plain SGD), print the traced forward + gradient IR, the progress and "
         "the test accuracy, and write ir.txt and loss.png to the output folder.")
@arg("--steps", type=positive_int, default=None, metavar="N",
     help="number of mini-batch SGD steps (default: 440, i.e. 20 epochs of 64-image batches)")
@arg("--quick", action="store_true", help="run only a few steps (a smoke test)")
@arg("--out", default="lgc-output", metavar="DIR",
     help="folder for ir.txt and loss.png (default: lgc-output)")
def demo(args: argparse.Namespace) -> int:
    from .demo import DEFAULT_STEPS, QUICK_STEPS, run_demo

    if args.quick and args.steps is not None:
        raise ArgumentError("lgc demo: give either --quick or --steps, not both "
                            "(see 'lgc demo --help')")
    steps = QUICK_STEPS if args.quick else (args.steps or DEFAULT_STEPS)
    run_demo(steps=steps, out_dir=args.out)
    return 0


# --- driver ----------------------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(prog="lgc", description="lgc: MATLAB Deep Learning Toolbox-style training "
                    "in Python, traced to an op IR and compiled.")
    parser.add_argument("--version", action="version", version=f"lgc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, fn in COMMANDS.items():
        p = sub.add_parser(name, help=fn.cli_summary, description=fn.cli_description)
        for flags, options in fn.cli_args:
            p.add_argument(*flags, **options)
        p.set_defaults(run=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `lgc` command line `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    where = "lgc"
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise ArgumentError(f"lgc: choose a command ({', '.join(COMMANDS)}); see "
                                f"'lgc --help'")
        where = f"lgc {args.command}"
        return args.run(args)
    except SystemExit as e:  # --help and --version print, then exit 0
        return e.code if isinstance(e.code, int) else 0
    except ArgumentError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lgc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a runtime failure: one sentence, the traceback on request
        if debug.level() >= 1:
            traceback.print_exc()
        if isinstance(e, OSError) and e.strerror and e.filename and e.errno:
            detail = f"{e.strerror}: {e.filename!r}"
        else:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = "" if isinstance(e, LgcError | OSError) else f"{type(e).__name__}: "
        print(f"{where}: {kind}{detail} (LGC_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
