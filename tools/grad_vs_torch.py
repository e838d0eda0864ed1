"""Loss + gradient (forward and backward, no update) of the MLP and LeNet workloads: lgc's
compiled dlfeval next to PyTorch eager, and lgc's cold/warm compile time in fresh processes.

    python tools/grad_vs_torch.py [--reps N]

The figures issue 4 asks for; tools/bench.py measures whole train steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_workloads as W  # noqa: E402, N812

import lgc  # noqa: E402


def grad_fn(loss):
    def loss_and_gradient(p, X, T):
        value = loss(p, X, T)
        return value, lgc.dlgradient(value, p)
    return loss_and_gradient


def median_ms(fn, reps: int) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def compile_once(name: str) -> None:
    """In a fresh process: trace + compile (or load) once, print seconds and sizes."""
    prob = W.problem(name, False)
    t0 = time.perf_counter()
    low = lgc.compile(grad_fn(prob.loss)).lower(prob.params, *prob.batch)
    print(time.perf_counter() - t0, low.stats["n_ops"], len(low.optimized.nodes),
          low.stats["n_kernels"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--compile-once", metavar="WORKLOAD", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.compile_once:
        compile_once(args.compile_once)
        return 0
    import torch

    for name in ("mlp", "lenet"):
        prob = W.problem(name, False)
        cf = lgc.compile(grad_fn(prob.loss))
        ours = median_ms(lambda cf=cf, p=prob: cf(p.params, *p.batch), args.reps)
        leaves, loss = W.torch_model(name, prob)
        theirs = median_ms(lambda f=loss, xs=leaves: torch.autograd.grad(f(), xs), args.reps)
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "LGC_CACHE_DIR": cache}
            cmd = [sys.executable, __file__, "--compile-once", name]
            cold, warm = (subprocess.run(cmd, env=env, capture_output=True, text=True,
                                         check=True).stdout.split() for _ in range(2))
        print(f"{name}: lgc {ours:.3f} ms, PyTorch eager {theirs:.3f} ms, ratio "
              f"{ours / theirs:.2f}; compile cold {float(cold[0]):.2f} s, warm "
              f"{float(warm[0]):.2f} s; {cold[1]} traced ops -> {cold[2]} optimized nodes, "
              f"{cold[3]} kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
