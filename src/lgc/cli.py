"""The `lgc` command: one function per subcommand, registered with `@command` and `@arg`.

Exit codes: 0 success, 1 runtime failure (one sentence on stderr), 2 bad arguments (one
sentence on stderr). `main(argv)` returns the code instead of exiting, so tests call it
directly. To add a subcommand, write one decorated function below; `build_parser` finds it.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import __version__, debug
from .errors import LgcError
from .ir.types import np_dtype

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


# --- loading a user's file -------------------------------------------------------------------


def split_target(spec: str, cmd: str, need_name: bool = False) -> tuple[Path, str | None]:
    """`FILE.py[:NAME]` -> (path, NAME or None); a bad spec is an ArgumentError."""
    path, name = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isidentifier():
        path, name = head, tail
    elif sep and not spec.endswith(".py"):
        raise ArgumentError(f"lgc {cmd}: {tail!r} in {spec!r} is not a Python name; write "
                            f"FILE.py:NAME")
    if not path.endswith(".py"):
        raise ArgumentError(f"lgc {cmd}: expected a Python file FILE.py[:NAME], got {spec!r}")
    if need_name and name is None:
        raise ArgumentError(f"lgc {cmd}: name the function to compile, as in {path}:NAME")
    if not Path(path).is_file():
        raise ArgumentError(f"lgc {cmd}: no such file {path!r}")
    return Path(path), name


def load_module(path: Path):
    """Run the file as a module (its folder on sys.path, for its own imports)."""
    name = f"lgc_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def is_network(obj) -> bool:
    from .dlnetwork import DLNetwork
    from .layers.base import Layer
    from .network import LayerGraph

    return isinstance(obj, LayerGraph | DLNetwork | Layer) or (
        isinstance(obj, list | tuple) and len(obj) > 0 and all(isinstance(x, Layer) for x in obj))


def _zero_arg(fn) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in sig.parameters.values())


def find_network(module, name: str | None, path: Path, cmd: str):
    """The network NAME names (a variable, or a zero-argument function returning one); without
    NAME, the first module-level network variable, else the first such function."""
    if name is not None:
        if not hasattr(module, name):
            raise ArgumentError(f"lgc {cmd}: {path} defines no {name!r}")
        obj = getattr(module, name)
        if is_network(obj):
            return obj
        if inspect.isfunction(obj) and _zero_arg(obj):
            made = obj()
            if is_network(made):
                return made
            raise ArgumentError(f"lgc {cmd}: {path}:{name}() returned a "
                                f"{type(made).__name__}, not a layer graph, dlnetwork or list "
                                f"of layers")
        raise ArgumentError(f"lgc {cmd}: {path}:{name} is a {type(obj).__name__}, not a layer "
                            f"graph, dlnetwork, list of layers or function with no arguments")
    members = [(k, v) for k, v in vars(module).items() if not k.startswith("_")]
    for _, v in members:
        if is_network(v):
            return v
    for k, v in members:
        if (inspect.isfunction(v) and v.__module__ == module.__name__ and _zero_arg(v)
                and k != "main" and not k.endswith("inputs")):
            made = v()
            if is_network(made):
                return made
    raise ArgumentError(f"lgc {cmd}: {path} defines no layer graph, dlnetwork or list of "
                        f"layers (name one: {path}:NAME)")


def find_function(module, name: str, path: Path, cmd: str):
    """FUNCTION and its example arguments, from FUNCTION_inputs() or example_inputs()."""
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ArgumentError(f"lgc {cmd}: {path} defines no function {name!r}")
    for maker in (f"{name}_inputs", "example_inputs"):
        if callable(getattr(module, maker, None)):
            args = getattr(module, maker)()
            return fn, tuple(args) if isinstance(args, tuple | list) else (args,)
    raise ArgumentError(f"lgc {cmd}: {path} needs a function {name}_inputs() or "
                        f"example_inputs() returning the arguments of {name}")


def network_functions(obj):
    """(net, example inputs, forward fn, loss-and-gradient fn) for drawing a network's IR."""
    from .dlarray import dlarray
    from .dlarray import sum as lgc_sum
    from .dlnetwork import DLNetwork, dlnetwork, forward
    from .transforms import dlgradient

    net = obj if isinstance(obj, DLNetwork) else dlnetwork(obj)
    xs = []
    for layer_name, port in net._arch.inputs:
        t = net._arch.layers[layer_name].input_type() if port is None else None
        if t is None:
            raise ArgumentError(f"lgc plot: the network input {layer_name} has no input "
                                f"layer, so its IR needs example inputs; write a model "
                                f"function and use FILE.py:FUNCTION")
        xs.append(dlarray(np.zeros(t.shape, np.dtype(np_dtype(t.dtype))), t.fmt))

    def network_forward(net, *X):  # noqa: N803
        return forward(net, *X)

    def network_loss(net, *X):  # noqa: N803
        # a stand-in loss (the sum of every output) so the gradient IR can be drawn
        outs = forward(net, *X)[:-1]
        loss = lgc_sum(outs[0])
        for y in outs[1:]:
            loss = loss + lgc_sum(y)
        return loss, dlgradient(loss, net.Learnables)

    return net, tuple(xs), network_forward, network_loss


# --- subcommands -----------------------------------------------------------------------------


@command("demo", "train a small CNN on scikit-learn's digits and write its diagrams",
         "Train a conv-batchnorm-relu CNN on scikit-learn's 8x8 handwritten digits with a "
         "compiled train step (lgc.compile_train_step), show the progress and the test "
         "accuracy, and write network.svg (the layer graph), ir_fused.svg (the fused IR of "
         "the loss and its gradient), ir.txt (the IR at each stage) and training.png to the "
         "output folder.")
@arg("--epochs", type=positive_int, default=None, metavar="N",
     help="number of epochs (default: 4)")
@arg("--quick", action="store_true", help="run only a few steps (a smoke test)")
@arg("--solver", choices=["adam", "sgdm"], default="adam", help="optimizer (default: adam)")
@arg("--out", default="lgc-output", metavar="DIR",
     help="output folder (default: lgc-output)")
def demo(args: argparse.Namespace) -> int:
    from .demo import DEFAULT_EPOCHS, QUICK_STEPS, run_demo

    if args.quick and args.epochs is not None:
        raise ArgumentError("lgc demo: give either --quick or --epochs, not both "
                            "(see 'lgc demo --help')")
    if args.quick:
        run_demo(epochs=1, max_steps=QUICK_STEPS, out_dir=args.out, solver=args.solver)
    else:
        run_demo(epochs=args.epochs or DEFAULT_EPOCHS, out_dir=args.out, solver=args.solver)
    return 0


@command("inspect", "print analyzeNetwork's table for a network defined in a Python file",
         "Load FILE.py and print analyzeNetwork's table (layers, activation sizes and "
         "formats, learnables, issues) for the network NAME: a module-level LayerGraph, "
         "dlnetwork or list of layers, or a function with no arguments returning one. "
         "Without NAME, the first such variable (then function) in the file. Exits with 1 "
         "when the analysis finds errors.")
@arg("target", metavar="FILE.py[:NAME]", help="the file and, optionally, the network's name")
def inspect_cmd(args: argparse.Namespace) -> int:
    from .analysis import analyzeNetwork

    path, name = split_target(args.target, "inspect")
    obj = find_network(load_module(path), name, path, "inspect")
    analysis = analyzeNetwork(obj)
    print(analysis)
    if analysis.errors:
        n = len(analysis.errors)
        print(f"lgc inspect: the network has {n} error{'s' if n > 1 else ''} (listed above)",
              file=sys.stderr)
        return 1
    return 0


@command("plot", "draw a network or a function's IR with graphviz",
         "Draw the network NAME of FILE.py (as for 'lgc inspect') or the model function "
         "NAME (its arguments from NAME_inputs() or example_inputs() in the same file) and "
         "write the diagram to OUT. Stages: layers (the layer graph; networks only), ir (the "
         "traced IR; for a network, its forward pass), grad (the gradient IR that dlgradient "
         "emitted; for a network, of the sum of its outputs with respect to its learnables), "
         "fused (the optimized, fused IR the Numba backend runs).")
@arg("target", metavar="FILE.py[:NAME]", help="the file and the network or function")
@arg("-o", "--output", required=True, metavar="OUT", help="the file to write")
@arg("--stage", choices=["layers", "ir", "grad", "fused"], default=None,
     help="what to draw (default: layers for a network, ir for a function)")
@arg("--format", choices=["svg", "png", "pdf"], default=None,
     help="file format (default: from OUT's suffix, else svg)")
def plot_cmd(args: argparse.Namespace) -> int:
    from .compiler import compile as lgc_compile
    from .compiler import gradient_part
    from .transforms import trace
    from .viz import output_format, plot

    try:
        fmt = output_format(args.output, args.format)
    except LgcError as e:
        raise ArgumentError(f"lgc plot: {str(e).removeprefix('lgc.plot: ')}") from None
    path, name = split_target(args.target, "plot")
    module = load_module(path)
    obj = getattr(module, name, None) if name else None
    if name is None or is_network(obj) or (inspect.isfunction(obj) and _zero_arg(obj)):
        net_obj = find_network(module, name, path, "plot")
        stage = args.stage or "layers"
        if stage == "layers":
            target = net_obj
        else:
            net, xs, fwd, loss = network_functions(net_obj)
            fn, fargs = (fwd if stage == "ir" else loss), (net, *xs)
    else:
        stage = args.stage or "ir"
        if stage == "layers":
            raise ArgumentError(f"lgc plot: --stage layers needs a network; {path}:{name} is "
                                f"a function (use --stage ir, grad or fused)")
        fn, fargs = find_function(module, name, path, "plot")
    if stage == "ir":
        target = trace(fn, *fargs)
    elif stage == "grad":
        target = gradient_part(trace(fn, *fargs).graph)
        if target is None:
            raise ArgumentError(f"lgc plot: {args.target} calls no dlgradient, so there is no "
                                f"gradient IR to draw (use --stage ir)")
    elif stage == "fused":
        target = lgc_compile(fn, backend="numba").lower(*fargs).optimized
    plot(target, args.output, format=fmt)
    print(f"wrote {args.output}")
    return 0


@command("ir", "print a function's IR at each stage (traced, gradient, optimized/fused)",
         "Trace FUNCTION of FILE.py on the arguments returned by FUNCTION_inputs() (or, when "
         "the file has none, example_inputs()) and print the IR at each stage: as traced, "
         "the gradient part that dlgradient emitted, and after the optimization passes and "
         "fusion; --source adds the generated kernel source.")
@arg("target", metavar="FILE.py:FUNCTION", help="the file and the function to compile")
@arg("--source", action="store_true", help="also print the generated kernel source")
@arg("--backend", choices=["numba", "reference"], default="numba",
     help="backend to compile for (default: numba; reference shows the unfused passes)")
def ir_cmd(args: argparse.Namespace) -> int:
    from .compiler import compile as lgc_compile
    from .viz import stages_text

    path, name = split_target(args.target, "ir", need_name=True)
    fn, fargs = find_function(load_module(path), name, path, "ir")
    lowered = lgc_compile(fn, backend=args.backend).lower(*fargs)
    print(stages_text(lowered, source=args.source))
    return 0


def find_bench() -> Path | None:
    """tools/bench.py of the checkout lgc runs from, else of the current folder."""
    here = Path(__file__).resolve()
    for root in (*here.parents[1:4], Path.cwd()):
        candidate = root / "tools" / "bench.py"
        if candidate.is_file():
            return candidate
    return None


@command("bench", "run the benchmarks (tools/bench.py of the lgc checkout)",
         "Run tools/bench.py (lgc against PyTorch and JAX where installed) from the lgc "
         "checkout; arguments after the options are passed on (workload names, --reps N, "
         "--json FILE).")
@arg("--quick", action="store_true", help="tiny sizes, a few repetitions")
@arg("rest", nargs=argparse.REMAINDER, metavar="...", help="passed on to tools/bench.py")
def bench(args: argparse.Namespace) -> int:
    script = find_bench()
    if script is None:
        raise LgcError("lgc bench: tools/bench.py was not found next to the lgc package or in "
                       "the current folder; run it from an lgc checkout")
    module = load_module(script)
    if not callable(getattr(module, "main", None)):
        raise LgcError(f"lgc bench: {script} has no main(argv) function")
    argv = (["--quick"] if args.quick else []) + list(args.rest)
    return int(module.main(argv) or 0)


@command("cache", "show or clear the on-disk cache of compiled kernels",
         "'lgc cache info' prints where compiled kernels are cached (LGC_CACHE_DIR), how many "
         "and their size; 'lgc cache clear' deletes them.")
@arg("action", choices=["info", "clear"], help="info or clear")
def cache(args: argparse.Namespace) -> int:
    from .backend.numba.compile import cache_info, clear_cache

    before = cache_info()
    if args.action == "clear":
        clear_cache()
        print(f"cleared {before['kernels']} cached kernels ({before['bytes'] / 1e6:.1f} MB) "
              f"from {before['dir']}")
        return 0
    print(f"cache folder: {before['dir']}")
    print(f"kernels:      {before['kernels']} ({before['bytes'] / 1e6:.1f} MB)")
    print("set LGC_CACHE_DIR to move it; 'lgc cache clear' deletes it")
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
        args, extra = parser.parse_known_args(argv)
        if extra and getattr(args, "rest", None) is not None:
            # a command that passes `rest` on (bench) takes its options in any order
            args.rest = extra + list(args.rest)
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
