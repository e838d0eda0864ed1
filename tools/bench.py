"""Speed of lgc next to PyTorch and JAX, measured in one run on one machine.

    python tools/bench.py                   # every workload: ms/step, ratios, compile, memory
    python tools/bench.py mlp lstm --reps 100
    python tools/bench.py --quick           # tiny sizes in-process: lgc and the peers agree
    python tools/bench.py --json out.json --plot ratios.png
    python tools/bench.py --profile lenet   # where the time of lgc's train step goes
    python tools/bench.py mlp lstm --against HEAD~3 --rounds 5   # lgc before and after
    python tools/bench.py --backend reference   # (numba by default; cuda: docs/cuda.md)

Every workload (tools/bench_workloads.py) is timed as a full train step — forward, loss,
backward, Adam update — in each contender: lgc compile_train_step, lgc dlfeval + adamupdate,
PyTorch eager (torch.optim.Adam), torch.compile and JAX jit. A full run times each (workload,
contender) in a fresh process: the median ms/step after warm-up, the first step (trace and
compile) with an empty kernel cache (cold) and a filled one (warm), and the peak resident
memory (getrusage maxrss). It also measures the machine's limits (a float32 STREAM triad and
np.matmul GEMM rate), Adam against the triad, compile time against depth and memory over
1,000 steps. --quick runs tiny sizes in this process and checks that the losses of the first
two steps agree between lgc and every peer; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import lgc

HERE = os.path.dirname(os.path.abspath(__file__))


def _sibling(name: str):
    """tools/<name>.py, loaded by path (`lgc bench` imports this file by path too)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _report():
    return _sibling("bench_report")


W = _sibling("bench_workloads")
NAMES = list(W.WORKLOADS)
CONTENDERS = ("lgc", "lgc_eager", "torch", "torch_compile", "jax")
AGREE_RTOL = 2e-3  # float32 losses of the first two steps; summation orders differ
TORCH_COMPILE_LIMIT_S = 300
THREADS = 0  # 0: each framework's default (every core); --threads N, and 1 for --quick


class UnavailableError(Exception):
    """A peer that is not installed (reported as such, never a failure)."""


def maxrss_mb() -> float:
    """Peak resident memory of this process. VmHWM, not getrusage's maxrss, where there is
    /proc: Linux keeps ru_maxrss across exec, so a worker would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- the contenders: each returns step() -> loss of that step ----------------------------------


def make_step(contender: str, name: str, prob, lr: float):
    if contender == "lgc":
        ts = lgc.compile_train_step(prob.loss, prob.params, "adam", learnRate=lr)
        return lambda: ts(*prob.batch)
    if contender == "lgc_eager":
        return _lgc_eager(prob, lr)
    try:
        if contender.startswith("torch"):
            import torch  # noqa: F401
        else:
            import jax  # noqa: F401
    except ImportError:
        raise UnavailableError("not installed") from None
    if contender == "jax":
        return _jax_step(name, prob, lr)
    return _torch_step(name, prob, lr, compiled=contender == "torch_compile")


def _lgc_eager(prob, lr):
    is_net = isinstance(prob.params, lgc.DLNetwork)

    def gradients(p, *batch):
        out = prob.loss(p, *batch)
        loss, *rest = out if isinstance(out, tuple) else (out,)
        return (loss, lgc.dlgradient(loss, p.Learnables if is_net else p), *rest)

    s = {"p": prob.params, "m": None, "v": None, "t": 0}

    def step():
        loss, grads, *rest = lgc.dlfeval(gradients, s["p"], *prob.batch)
        if is_net:
            s["p"].State = rest[0]
        s["t"] += 1
        s["p"], s["m"], s["v"] = lgc.adamupdate(s["p"], grads, s["m"], s["v"], s["t"], lr)
        return float(loss)
    return step


def _torch_step(name, prob, lr, compiled):
    import torch

    if THREADS:
        torch.set_num_threads(THREADS)
    params, loss_fn = W.torch_model(name, prob)
    opt = torch.optim.Adam(params, lr=lr)
    update = opt.step
    if compiled:
        loss_fn = torch.compile(loss_fn)
        update = torch.compile(opt.step)  # the documented way to compile an optimizer

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        update()
        return loss.item()
    return step


def _jax_step(name, prob, lr):
    import jax
    import jax.numpy as jnp

    params, loss_fn = W.jax_model(name, prob)
    b1, b2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def train(ps, ms, vs, t):
        loss, gs = jax.value_and_grad(loss_fn)(ps)
        ms = [b1 * m + (1 - b1) * g for m, g in zip(ms, gs)]
        vs = [b2 * v + (1 - b2) * g * g for v, g in zip(vs, gs)]
        scale = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        ps = [p - scale * m / (jnp.sqrt(v) + eps) for p, m, v in zip(ps, ms, vs)]
        return loss, ps, ms, vs

    zeros = [jnp.zeros_like(p) for p in params]
    s = {"state": (params, zeros, list(zeros)), "t": 0}

    def step():
        s["t"] += 1
        loss, *state = train(*s["state"], jnp.float32(s["t"]))
        s["state"] = state
        return float(loss)  # waits for the result
    return step


# --- measuring one (workload, contender) --------------------------------------------------------


def measure(contender: str, name: str, quick: bool, reps: int, lr: float,
            memflat: bool = False) -> dict:
    prob = W.problem(name, quick)
    out = {"rss_before_mb": maxrss_mb()}
    t0 = time.perf_counter()
    try:
        step = make_step(contender, name, prob, lr)
    except UnavailableError as e:
        return {"status": str(e)}
    losses = [step()]
    out["first_step_s"] = time.perf_counter() - t0
    losses.append(step())
    if memflat:  # maxrss after 100 and after 1,000 steps of the same step
        for _ in range(98):
            step()
        out["rss_100_mb"] = maxrss_mb()
        for _ in range(900):
            step()
        out["rss_1000_mb"] = maxrss_mb()
        return {**out, "status": "ok", "losses": losses}
    for _ in range(min(3, reps)):
        step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    out.update(status="ok", losses=losses, ms=statistics.median(times) * 1e3,
               ms_min=min(times) * 1e3, reps=reps, peak_rss_mb=maxrss_mb())
    return out


def worker(contender: str, name: str, args, cache: str | None = None, reps: int | None = None,
           memflat: bool = False, timeout: float = 900, src: str | None = None) -> dict:
    """measure() in a fresh process (its own maxrss, its own cold or warm kernel cache); with
    `src`, the lgc of that source folder (another revision's `src/`)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", contender, name,
           "--reps", str(reps or args.reps), "--lr", str(args.lr)] + (
        ["--memflat"] if memflat else [])
    env = {**os.environ, "LGC_BACKEND": args.backend}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    if args.threads:
        cmd += ["--threads", str(args.threads)]
        env.update({k: str(args.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")})
        env["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false" if args.threads == 1 else "")
    if cache:
        env["LGC_CACHE_DIR"] = cache
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"failed: exceeded {timeout:.0f} s (compile time capped)"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
    if res.returncode or not lines:
        err = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
        return {"status": f"failed: {err[:200]}"}
    out = json.loads(lines[-1][len("BENCH_RESULT "):])
    out["process_s"] = time.perf_counter() - t0
    return out


# --- physical limits ------------------------------------------------------------------------------


def _triad_kernel():
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def triad(a, b, c, s):
        for i in prange(a.size):
            a[i] = b[i] + s * c[i]
    return triad


def limits(quick: bool) -> dict:
    """STREAM-style float32 triad (GB/s, 3 arrays counted, best of N), np.matmul GFLOP/s,
    and the Adam update alone (7 floats moved per element) as % of the triad."""
    n = 1 << (16 if quick else 25)
    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    triad = _triad_kernel()
    triad(a, b, c, np.float32(3.0))
    best = min(_timed(lambda: triad(a, b, c, np.float32(3.0))) for _ in range(3 if quick else 20))
    out = {"triad_elements": n, "triad_GBps": 3 * 4 * n / best / 1e9}
    m = 128 if quick else 1024
    x, y = (np.random.default_rng(0).random((m, m), dtype=np.float32) for _ in range(2))
    best = min(_timed(lambda: np.matmul(x, y)) for _ in range(3 if quick else 10))
    out.update(gemm_n=m, gemm_GFLOPs=2 * m ** 3 / best / 1e9)
    out.update(_adam_alone(1000 if quick else 10_000_000, 3 if quick else 20,
                           out["triad_GBps"]))
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _adam_alone(n: int, reps: int, triad_gbps: float) -> dict:
    rng = np.random.default_rng(0)
    theta, g = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    s = {"p": theta, "m": None, "v": None, "t": 0}

    def update():
        s["t"] += 1
        s["p"], s["m"], s["v"] = lgc.adamupdate(s["p"], g, s["m"], s["v"], s["t"])
    update()
    out = {"adam_n": n, "adam_lgc_ms": min(_timed(update) for _ in range(reps)) * 1e3}
    from lgc.updates import _RUNNERS  # the flat-buffer kernel alone, without packing the grad

    run = next(r for (op, _), r in _RUNNERS.items() if op == "adam_update")
    bufs = [np.array(s["p"]), g, np.zeros(n, np.float32), np.zeros(n, np.float32)]
    call = lambda: run([bufs[0], bufs[2], bufs[3]], [*bufs, 1e-3, 0.9, 0.999, 1e-8, 1.0])  # noqa: E731
    call()
    out["adam_kernel_ms"] = min(_timed(call) for _ in range(reps)) * 1e3
    try:
        import torch
    except ImportError:
        out["adam_torch_ms"] = None
    else:
        p = torch.tensor(theta, requires_grad=True)
        p.grad = torch.tensor(g)
        opt = torch.optim.Adam([p], lr=1e-3)
        opt.step()
        out["adam_torch_ms"] = min(_timed(opt.step) for _ in range(reps)) * 1e3
    for k in ("lgc", "kernel", "torch"):
        ms = out[f"adam_{k}_ms"]
        if ms:
            out[f"adam_{k}_pct_triad"] = 100 * 7 * 4 * n / (ms / 1e3) / 1e9 / triad_gbps
    return out


# --- the runs ---------------------------------------------------------------------------------


def agree(ref, got) -> bool:
    return bool(np.allclose(got, ref, rtol=AGREE_RTOL, atol=1e-5))


def run_quick(names, contenders, args) -> list[dict]:
    rows = []
    for name in names:
        row = {"workload": name}
        for c in contenders:
            row[c] = r = measure(c, name, True, args.reps, args.lr)
            if c != "lgc" and r.get("status") == "ok" and row["lgc"].get("status") == "ok":
                r["agree"] = agree(row["lgc"]["losses"], r["losses"])
                r["ratio"] = row["lgc"]["ms"] / r["ms"]
        rows.append(row)
    return rows


def _combine(runs: list[dict]) -> dict:
    """One contender's figures from its rounds (fresh processes): the median of their medians,
    each round's median kept in `ms_rounds`."""
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    out["ms_rounds"] = [r["ms"] for r in ok]
    out["ms"] = statistics.median(out["ms_rounds"])
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    return out


def run_full(names, contenders, args) -> list[dict]:
    """Each workload: a cold start (empty kernel cache), then `args.rounds` rounds in which
    every contender runs once in a fresh process, one after another, so a slow phase of a
    shared machine falls on all of them (the figures are the medians over rounds)."""
    rows = []
    order = ["lgc"] + [c for c in contenders if c != "lgc"]
    for name in names:
        row = {"workload": name, "description": W.DESCRIPTION.get(name, name)}
        runs: dict[str, list[dict]] = {c: [] for c in order}
        with tempfile.TemporaryDirectory() as cache:
            cold = worker("lgc", name, args, cache, reps=3)
            row["compile_cold_s"] = cold.get("first_step_s")
            for round_ in range(args.rounds):
                for c in order:
                    if round_ and runs[c][0].get("status") != "ok":
                        continue  # not installed or failed: once is enough
                    limit = TORCH_COMPILE_LIMIT_S if c == "torch_compile" else 900
                    runs[c].append(worker(c, name, args, cache, timeout=limit))
        for c in order:
            row[c] = r = _combine(runs[c])
            if c != "lgc" and r.get("status") == "ok" and row["lgc"].get("status") == "ok":
                r["agree"] = agree(row["lgc"]["losses"], r["losses"])
                r["ratio"] = row["lgc"]["ms"] / r["ms"]
        # the first warm round: a new process loading every kernel from the disk cache
        row["compile_warm_s"] = runs["lgc"][0].get("first_step_s")
        row["process_warm_s"] = runs["lgc"][0].get("process_s")
        print(summary_line(row), flush=True)
        rows.append(row)
    return rows


# --- before and after: lgc at another revision against the working tree ----------------------


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _checkout(rev: str, folder: str) -> str:
    """A detached worktree of `rev` in `folder`; returns its `src` folder."""
    res = subprocess.run(["git", "-C", _REPO, "worktree", "add", "--detach", folder, rev],
                         capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"--against {rev}: git worktree failed: {res.stderr.strip()}")
    return os.path.join(folder, "src")


def _drop_checkout(folder: str) -> None:
    subprocess.run(["git", "-C", _REPO, "worktree", "remove", "--force", folder],
                   capture_output=True)


def compare_rounds(names, sources: dict[str, str | None], args) -> list[dict]:
    """For each workload, `args.rounds` rounds in which every source's lgc train step runs
    once in a fresh process, in turn (one warm kernel cache for all: kernels are keyed by
    their source, so each version loads its own). `--peers lgc_eager` compares the dlfeval +
    adamupdate loop instead."""
    contender = "lgc_eager" if args.peers == "lgc_eager" else "lgc"
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name in names:
            runs: dict[str, list[float]] = {label: [] for label in sources}
            for _ in range(args.rounds):
                for label, src in sources.items():
                    r = worker(contender, name, args, cache, src=src)
                    if r.get("status") != "ok":
                        raise SystemExit(f"{name} at {label}: {r.get('status')}")
                    if src and not r["lgc_path"].startswith(os.path.dirname(src)):
                        raise SystemExit(f"{name} at {label} imported lgc from {r['lgc_path']}")
                    runs[label].append(r["ms"])
            row = {"workload": name, "ms_rounds": runs,
                   "ms": {label: statistics.median(v) for label, v in runs.items()}}
            rows.append(row)
            print(compare_line(row), flush=True)
    return rows


def compare_line(row: dict) -> str:
    (a, before), (b, after) = row["ms"].items()
    rounds = "; ".join(f"{label} " + ", ".join(f"{x:.3g}" for x in v)
                       for label, v in row["ms_rounds"].items())
    return (f"{row['workload']:>6}  {a} {before:.3g} ms -> {b} {after:.3g} ms "
            f"({100 * (after / before - 1):+.1f} %)  [rounds: {rounds}]")


def against(names, args) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "rev")
        src = _checkout(args.against, folder)
        try:
            rows = compare_rounds(names, {args.against: src, "working tree": None}, args)
        finally:
            _drop_checkout(folder)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"against": args.against, "rounds": args.rounds, "reps": args.reps,
                       "machine": machine(), "workloads": rows}, f, indent=1)
    return 0


def depth_scaling(args) -> dict:
    out = {}
    for d in (4, 16, 64):
        with tempfile.TemporaryDirectory() as cache:
            out[d] = worker("lgc", f"depth{d}", args, cache, reps=3).get("first_step_s")
    ds = np.array(list(out), float)
    ts = np.array(list(out.values()), float)
    slope, icpt = np.polyfit(ds, ts, 1)
    resid = ts - (slope * ds + icpt)
    r2 = 1 - float(resid @ resid) / float(((ts - ts.mean()) ** 2).sum())
    return {"cold_compile_s": out, "seconds_per_layer": slope, "intercept_s": icpt, "r2": r2}


def machine() -> dict:
    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    versions = {}
    for mod in ("numpy", "numba", "torch", "jax"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return {"cpu": model, "cores": os.cpu_count(), "memory_GiB": round(mem, 1),
            "python": platform.python_version(), "versions": versions,
            "loadavg": os.getloadavg()}


# --- profile: every step of the compiled executable timed, like a profiler would -------------


def profile(name: str, reps: int, top: int, lr: float, quick: bool = False) -> str:
    """The top steps of lgc's compiled train step by time: op, output shape, provenance; then
    the calls inside its runs by the pool's cycle counts."""
    prob = W.problem(name, quick)
    ts = lgc.compile_train_step(prob.loss, prob.params, "adam", learnRate=lr)
    ts(*prob.batch)
    (compiled,) = ts._programs.values()
    exe = compiled.exe
    if not hasattr(exe, "_bound"):
        raise SystemExit(f"--profile needs the numba backend (got {exe.backend})")
    for _ in range(3):
        ts(*prob.batch)
    # what a call runs: each step's call built once, or its run(env) (exe._prebind), timed
    # one by one here (a call outside the profile runs prepared calls in runs: exe._calls)
    original, merged = exe._bound, exe._calls
    spent = [0.0] * len(original)

    def timed(i, fn):
        def f(*env):
            t = time.perf_counter()
            fn(*env)
            spent[i] += time.perf_counter() - t
        return f
    exe._calls = [(dataclasses.replace(s, run=timed(i, s.run)), c and timed(i, c))
                  for i, (s, c) in enumerate(original)]
    t0 = time.perf_counter()
    for _ in range(reps):
        ts(*prob.batch)
    total = (time.perf_counter() - t0) / reps * 1e3
    exe._calls = merged
    per = [x / reps * 1e3 for x in spent]
    inside = sum(per)
    lines = [f"profile of the lgc train step '{name}' ({exe.backend}, {reps} steps): "
             f"{total:.3f} ms/step; {inside:.3f} ms in {len(per)} executable steps "
             f"({len(exe.kernels)} kernels; {len(exe._steps) - len(per)} more done once when "
             f"built), {total - inside:.3f} ms outside them (driver loop, input checks, "
             "TrainStep)",
             f"{'ms/step':>8} {'%':>5}  {'kind':6} {'op':34} {'output shape':18} provenance"]
    by_kind: dict[str, float] = {}
    for i in sorted(range(len(per)), key=per.__getitem__, reverse=True):
        s = original[i][0]
        by_kind[s.kind] = by_kind.get(s.kind, 0.0) + per[i]
        if len(lines) - 2 >= top:
            continue
        lines.append(f"{per[i]:8.3f} {100 * per[i] / total:5.1f}  {s.kind:6} {_label(s)}")
    lines.append("by kind: " + ", ".join(f"{k} {v:.3f} ms ({100 * v / total:.0f}%)"
                                          for k, v in sorted(by_kind.items())))
    lines += _profile_runs(exe, lambda: ts(*prob.batch), reps, top)
    return "\n".join(lines)


def _profile_runs(exe, step, reps: int, top: int) -> list[str]:
    """Each call's time inside the executable's runs of prepared calls (`runtime.Run`), from
    the cycles the pool records per call: no timer between the calls, unlike the per-step
    profile above (which runs each step from Python)."""
    import numba

    from lgc.backend.numba.intrinsics import cycles
    from lgc.backend.numba.runtime import Run

    rows, position = [], {id(s): i for i, (s, _) in enumerate(exe._bound)}
    for first, call in exe._calls:
        if isinstance(call, Run):
            for r in range(len(call.calls)):
                rows.append((exe._bound[position[id(first)] + r][0], call.program, r))
    if not rows or not rows[0][1][:, 3].any():
        return ["(no runs of prepared calls, or no cycle counter: no times inside runs)"]
    counter = numba.njit(lambda: cycles())
    c0, t0 = counter(), time.perf_counter()
    time.sleep(0.1)
    per_us = (counter() - c0) / (time.perf_counter() - t0) / 1e6
    spent, steps = np.zeros((len(rows), reps)), []
    for j in range(reps):
        t0 = time.perf_counter()
        step()
        steps.append(time.perf_counter() - t0)
        for i, (_, program, r) in enumerate(rows):
            spent[i, j] = program[r, 3]
    total = float(np.median(steps)) * 1e6
    median = np.median(spent, axis=1) / per_us
    lines = [f"inside the runs ({len(rows)} calls, {reps} steps, the pool's cycle counts): "
             f"{median.sum():.1f} us of the step's {total:.1f} us (medians)",
             f"{'us/step':>8} {'%':>5}  {'parts':5} {'op':34} {'output shape':18} provenance"]
    for i in np.argsort(-median)[:top]:
        s, program, r = rows[i]
        lines.append(f"{median[i]:8.1f} {100 * median[i] / total:5.1f}  {program[r, 2]:<5} "
                     f"{_label(s)}")
    return lines


def _label(step) -> str:
    """A profiled step's op (fused members joined by +), output shape (its largest output's:
    an output pruned by dead-code elimination is empty) and provenance."""
    node = step.node
    op = "+".join(step.kernel.ops) if step.kernel is not None else node.op.name
    out = max(node.outputs, key=lambda o: o.type.size, default=None)
    shape = "x".join(map(str, out.shape)) if out is not None else ""
    return f"{op[:34]:34} {shape[:18]:18} {node.prov}"


# --- output -----------------------------------------------------------------------------------


def _fmt(r: dict | None) -> str:
    if not r:
        return "-"
    if r.get("status") != "ok":
        return r.get("status", "-")
    s = f"{r['ms']:.3g} ms"
    if "ratio" in r:
        s += f" (×{r['ratio']:.2f})"
    if r.get("agree") is False:
        s += " DISAGREES"
    return s


def summary_line(row: dict) -> str:
    parts = [f"{row['workload']:>6}"] + [f"{c}={_fmt(row.get(c))}" for c in CONTENDERS
                                         if c in row]
    if row.get("compile_cold_s") is not None:
        parts.append(f"compile cold {row['compile_cold_s']:.2f} s warm "
                     f"{row['compile_warm_s']:.2f} s")
    return "  ".join(parts)


# --- entry points -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", default=None, help=f"any of {NAMES} (default all)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes in-process; check agreement")
    ap.add_argument("--reps", type=int, default=None, help="timed steps per contender")
    ap.add_argument("--rounds", type=int, default=1,
                    help="fresh processes per contender, interleaved; the median is reported")
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    ap.add_argument("--peers", default=None, help=f"comma-separated subset of {CONTENDERS}")
    ap.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    ap.add_argument("--plot", metavar="PNG", help="bar chart of the ratios lgc/peer")
    ap.add_argument("--report", metavar="JSON",
                    help="print the Markdown tables of a --json file (and --plot it); no runs")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for every framework (default: their own, all cores)")
    ap.add_argument("--backend", default="numba", choices=["numba", "cuda", "reference"])
    ap.add_argument("--profile", metavar="WORKLOAD", help="time each step of lgc's executable")
    ap.add_argument("--top", type=int, default=15, help="rows of --profile")
    ap.add_argument("--no-extras", action="store_true",
                    help="skip limits, compile-vs-depth and memory-over-1,000-steps")
    ap.add_argument("--against", metavar="REV",
                    help="lgc at git revision REV against the working tree, taking turns in "
                         "fresh processes (--rounds of each): before/after of a change")
    ap.add_argument("--worker", nargs=2, metavar=("CONTENDER", "WORKLOAD"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--memflat", action="store_true", help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.report:
        with open(args.report) as f:
            results = json.load(f)
        print(_report().markdown(results))
        if args.plot:
            _report().plot(results, args.plot)
        return 0
    names = args.workloads or NAMES
    bad = [n for n in names if n not in NAMES and not n.startswith("depth")]
    if bad:
        print(f"unknown workload(s) {bad}; choose from {NAMES}", file=sys.stderr)
        return 2
    args.reps = args.reps or (3 if args.quick else 50)
    args.lr = args.lr or (1e-2 if args.quick else 1e-3)
    global THREADS
    # --quick checks numbers: one PyTorch thread avoids its thread barriers on a busy machine
    THREADS = args.threads or (1 if args.quick else 0)
    contenders = args.peers.split(",") if args.peers else [
        c for c in CONTENDERS if not (args.quick and c == "torch_compile")]
    import lgc.backend as backends

    previous = backends._selected
    lgc.set_backend(args.backend)
    try:
        if args.worker:
            res = measure(*args.worker, False, args.reps, args.lr, args.memflat)
            res["lgc_path"] = os.path.dirname(os.path.dirname(os.path.abspath(lgc.__file__)))
            print("BENCH_RESULT " + json.dumps(res), flush=True)
            return 0
        if args.profile:
            print(profile(args.profile, args.reps, args.top, args.lr, args.quick))
            return 0
        if args.against:
            return against(names, args)
        return _run(names, contenders, args)
    finally:
        backends._selected = previous


def _run(names, contenders, args) -> int:
    results = {"command": "python tools/bench.py " + " ".join(sys.argv[1:]) if __name__ ==
               "__main__" else "tools/bench.py main()", "backend": args.backend,
               "quick": args.quick, "machine": machine(), "reps": args.reps, "lr": args.lr,
               "rounds": args.rounds}
    if args.quick:
        results["workloads"] = rows = run_quick(names, contenders, args)
        for row in rows:
            print(summary_line(row))
    else:
        results["workloads"] = rows = run_full(names, contenders, args)
    if not args.no_extras:
        results["limits"] = lim = limits(args.quick)
        print(f"limits: triad {lim['triad_GBps']:.1f} GB/s, GEMM {lim['gemm_GFLOPs']:.0f} "
              f"GFLOP/s; Adam alone: lgc {lim.get('adam_lgc_pct_triad', 0):.0f}% of triad "
              f"(kernel {lim.get('adam_kernel_pct_triad', 0):.0f}%), PyTorch "
              f"{lim.get('adam_torch_pct_triad') or 0:.0f}%")
        if not args.quick:
            results["depth"] = d = depth_scaling(args)
            print(f"compile vs depth: {d['cold_compile_s']}, {d['seconds_per_layer']:.3f} "
                  f"s/layer, R² {d['r2']:.3f}")
            m = worker("lgc", "mlp", args, memflat=True)
            results["memory"] = m
            print(f"memory: maxrss after 100 steps {m.get('rss_100_mb', 0):.1f} MB, after "
                  f"1,000 {m.get('rss_1000_mb', 0):.1f} MB")
    results["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    if args.plot:
        _report().plot(results, args.plot)
    failed = [(r["workload"], c) for r in rows for c in contenders
              if (r.get(c) or {}).get("agree") is False]
    if failed:
        print(f"DISAGREEMENT between lgc and {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
