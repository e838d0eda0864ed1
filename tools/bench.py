"""Speed of lgc next to PyTorch (and JAX when installed), measured in one run on one machine.

    python tools/bench.py                 # all workloads, a table of ms per step and ratios
    python tools/bench.py --quick         # tiny sizes, checks lgc and the peers agree
    python tools/bench.py --json out.json

Each workload is a loss plus its gradient with respect to every parameter (forward and
backward, no update yet) computed by lgc's compiled dlfeval and by the peers on the same data.
Timings are medians over repeated runs after warm-up; compile time is measured in fresh
processes: cold (empty kernel cache) and warm (cache filled by the cold run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import lgc

# --- workloads: (params, inputs) builders and the lgc model loss --------------------------------


def mlp(batch=128, sizes=(64, 256, 256, 10), seed=0):
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = (rng.normal(size=(n_out, n_in)) * np.sqrt(2 / n_in)).astype(np.float32)
        params[f"b{i}"] = np.zeros((n_out, 1), np.float32)
    x = rng.normal(size=(sizes[0], batch)).astype(np.float32)
    t = lgc.onehotencode(rng.integers(0, sizes[-1], batch), 0, ClassNames=range(sizes[-1]))
    return params, x, t


def mlp_loss(params, X, T):
    n = len(params) // 2
    h = lgc.dlarray(X, "CB")
    for i in range(n):
        h = lgc.fullyconnect(h, params[f"W{i}"], params[f"b{i}"])
        if i < n - 1:
            h = lgc.relu(h)
    loss = lgc.crossentropy(lgc.softmax(h), lgc.dlarray(T, "CB"))
    return loss, lgc.dlgradient(loss, params)


def lenet(batch=64, seed=0):
    rng = np.random.default_rng(seed)

    def w(*shape, fan_in):
        return (rng.normal(size=shape) * np.sqrt(2 / fan_in)).astype(np.float32)

    params = {"c1w": w(5, 5, 1, 6, fan_in=25), "c1b": np.zeros(6, np.float32),
              "c2w": w(5, 5, 6, 16, fan_in=150), "c2b": np.zeros(16, np.float32),
              "f1w": w(120, 400, fan_in=400), "f1b": np.zeros((120, 1), np.float32),
              "f2w": w(84, 120, fan_in=120), "f2b": np.zeros((84, 1), np.float32),
              "f3w": w(10, 84, fan_in=84), "f3b": np.zeros((10, 1), np.float32)}
    x = rng.normal(size=(28, 28, 1, batch)).astype(np.float32)
    t = lgc.onehotencode(rng.integers(0, 10, batch), 0, ClassNames=range(10))
    return params, x, t


def lenet_loss(p, X, T):
    h = lgc.dlarray(X, "SSCB")
    h = lgc.maxpool(lgc.relu(lgc.dlconv(h, p["c1w"], p["c1b"], Padding=2)), 2, Stride=2)
    h = lgc.maxpool(lgc.relu(lgc.dlconv(h, p["c2w"], p["c2b"])), 2, Stride=2)
    h = lgc.relu(lgc.fullyconnect(h, p["f1w"], p["f1b"]))
    h = lgc.relu(lgc.fullyconnect(h, p["f2w"], p["f2b"]))
    loss = lgc.crossentropy(lgc.softmax(lgc.fullyconnect(h, p["f3w"], p["f3b"])),
                            lgc.dlarray(T, "CB"))
    return loss, lgc.dlgradient(loss, p)


WORKLOADS = {"mlp": (mlp, mlp_loss), "lenet": (lenet, lenet_loss)}


# --- peers --------------------------------------------------------------------------------------


def torch_step(name, params, x, t):
    """A PyTorch eager loss+gradient with the same math and data layout conversions done once."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    labels = torch.tensor(np.argmax(t, axis=0))
    if name == "mlp":
        xt = torch.tensor(x.T.copy())

        def step():
            h = xt
            n = len(tp) // 2
            for i in range(n):
                h = h @ tp[f"W{i}"].T + tp[f"b{i}"][:, 0]
                if i < n - 1:
                    h = torch.relu(h)
            loss = F.cross_entropy(h, labels)
            return loss, torch.autograd.grad(loss, list(tp.values()))
    else:
        xt = torch.tensor(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))  # NCHW
        conv = {k: torch.tensor(np.ascontiguousarray(params[k].transpose(3, 2, 0, 1)),
                                requires_grad=True) for k in ("c1w", "c2w")}
        rest = {k: v for k, v in tp.items() if k not in conv}
        leaves = list(conv.values()) + list(rest.values())

        def step():
            h = F.max_pool2d(torch.relu(F.conv2d(xt, conv["c1w"], rest["c1b"], padding=2)), 2)
            h = F.max_pool2d(torch.relu(F.conv2d(h, conv["c2w"], rest["c2b"])), 2)
            # lgc flattens MATLAB-style (first S fastest): permute to (N, C, W, H) first
            h = h.permute(0, 1, 3, 2).reshape(h.shape[0], -1)
            h = torch.relu(h @ rest["f1w"].T + rest["f1b"][:, 0])
            h = torch.relu(h @ rest["f2w"].T + rest["f2b"][:, 0])
            loss = F.cross_entropy(h @ rest["f3w"].T + rest["f3b"][:, 0], labels)
            return loss, torch.autograd.grad(loss, leaves)
    return step


def median_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def compile_times(name: str) -> dict:
    """Cold (empty cache) and warm (filled cache) trace+compile time in fresh processes."""
    code = (f"import sys, time; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import bench, lgc; build, loss = bench.WORKLOADS[{name!r}]; "
            "p, x, t = build(); t0 = time.perf_counter(); "
            "low = lgc.compile(loss).lower(p, x, t); "
            "print(time.perf_counter() - t0, low.stats['n_ops'], low.stats['n_kernels'])")
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LGC_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True)
            secs, n_ops, n_kernels = res.stdout.split()
            out[f"compile_{label}_s"] = float(secs)
    out["n_ops"], out["n_kernels"] = int(n_ops), int(n_kernels)
    return out


def run(names, quick: bool, reps: int) -> list[dict]:
    rows = []
    for name in names:
        build, loss = WORKLOADS[name]
        params, x, t = build(batch=8) if quick else build()
        cf = lgc.compile(loss)
        ours = cf(params, x, t)
        row = {"workload": name,
               "lgc_ms": median_ms(lambda cf=cf, p=params, x=x, t=t: cf(p, x, t), reps)}
        try:
            step = torch_step(name, params, x, t)
        except ImportError:
            row["torch_ms"] = None
        else:
            loss_t, grads_t = step()
            np.testing.assert_allclose(float(ours[0]), loss_t.item(), rtol=1e-4)
            row["torch_ms"] = median_ms(step, reps)
            row["lgc/torch"] = row["lgc_ms"] / row["torch_ms"]
        if not quick:
            row.update(compile_times(name))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few repetitions")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    rows = run(args.workloads, args.quick, 3 if args.quick else args.reps)
    for r in rows:
        print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in r.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
