"""Cold start: compile a program's new kernels in this process and worker processes at once.

Numba compiles one function at a time per process (a global compiler lock), so on a cold
cache a program's kernels compile one after another. Here the new kernels (source files this
process just wrote) and the argument types they will be called with (from a dry run of the
program, kernels skipped) become jobs; one or more worker processes and this process each
take jobs (an exclusive claim file per job: every job is compiled exactly once) and compile
them with `cache=True`, so the workers' machine code lands in the disk cache, where the
warm-up run then loads it. The pool's own compiled loop (threads.py), which the warm-up run's
first threaded call needs, joins the jobs when it is not on disk either (~0.5 s of compile).
Everyone takes the next unclaimed job, most expensive first (parallel kernels), so the last
ones, which one side may wait for, are cheap. A worker that fails or is missing changes
nothing but speed: whatever is not on disk then compiles in this process, errors included.

It only pays once the compile work outweighs a worker's start-up (importing Numba and its
first-compile set-up, about 0.7 s) and a core is idle, so small programs, single-core machines
and busy machines (1-minute load average: one worker per idle core) skip it.
LGC_COMPILE_WORKERS=N always uses N workers when two or more kernels are new (0: never).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import compile as _compile
from . import threads

# rough serial compile seconds of one kernel: the estimate decides whether workers pay
COST_SERIAL_S, COST_DOT_S = 0.15, 0.6  # a conv kernel (in-kernel GEMMs): 0.6-1.0 s measured
MIN_WORK_S = 2.5  # below, a worker's start-up (~0.7 s) eats the gain (more on a busy machine)
MAX_WORKERS = 4
WORKER_TIMEOUT_S = 600.0


def n_workers() -> tuple[int, bool]:
    """(number of workers, whether the user set it: then they run whatever the estimate)."""
    env = os.environ.get("LGC_COMPILE_WORKERS")
    if env is not None:
        try:
            return max(0, int(env)), True
        except ValueError:
            return 0, True
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    # a worker on a core that other processes keep busy only competes with them
    return max(0, min(cores - 1, MAX_WORKERS, int(cores - _busy_cores()))), False


LOOKS, LOOK_GAP_S = 10, 0.002  # how `_busy_cores` watches the machine: 10 looks, 2 ms apart


def _busy_cores() -> float:
    """How many cores other processes keep busy now: the threads runnable outside this
    process, averaged over a few looks (LOOKS, ~20 ms) at /proc/loadavg's running count less
    this process's own running threads (BLAS's spin for a while after a call) — not the
    1-minute load average, which still counts work that just ended (the previous process of
    a benchmark, this program's own tracing: a cold LeNet start just after two busy threads
    stopped compiled alone, 5.2-6.0 s instead of 4.3). Elsewhere, the load average less this
    process's own ~1."""
    try:
        others = 0
        for i in range(LOOKS):
            if i:
                time.sleep(LOOK_GAP_S)
            with open("/proc/loadavg") as f:
                others += _running(f.read()) - _own_running()
        return max(0.0, others / LOOKS)
    except (OSError, ValueError, IndexError):
        try:
            return max(0.0, os.getloadavg()[0] - 1.0)
        except OSError:
            return 0.0


def _own_running() -> int:
    """This process's threads that are running or runnable (state R in /proc/self/task)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        n += stat[stat.rindex(")") + 2] == "R"
    return n


def _running(loadavg: str) -> int:
    """The threads runnable at this moment, from /proc/loadavg ("0.52 0.83 0.92 2/108 8170":
    the fourth field's first number)."""
    return int(loadavg.split()[3].split("/")[0])


def _cost(source: str) -> float:
    """A guess at a kernel's compile seconds: BLAS calls cost the most."""
    return (COST_SERIAL_S + (COST_DOT_S if _compile.calls_blas(source) else 0.0)
            + 0.005 * source.count("\n"))


def prebuild(exe) -> dict[int, tuple[float, str]]:
    """Compile `exe`'s new kernels in parallel when it pays; returns {id(dispatcher):
    (compile seconds, where)} of the kernels compiled here (in this process or a worker)."""
    new = {}
    for k in exe.kernels:
        if _compile.is_new(k.fn) and not k.fn.overloads:
            new.setdefault(id(k.fn), k)
    if len(new) < 2:  # a warm start: no look at the machine (~20 ms, `_busy_cores`)
        return {}
    workers, forced = n_workers()
    if workers < 1 or (not forced and sum(_cost(k.source) for k in new.values()) < MIN_WORK_S):
        return {}
    calls = exe._dry_run_signatures(set(new))
    if not calls:
        return {}
    jobs = sorted(calls, key=lambda c: -_cost(new[id(c[0])].source))
    pool, sig = threads.pool_kernel()  # the threads' own compiled loop, if not on disk yet
    if _compile.is_new(pool) and not pool.overloads:
        jobs.insert(1, (pool, sig))  # early: the warm-up run's first threaded call needs it
    return _run_jobs(jobs, min(workers, len(jobs) - 1))


# The worker needs lgc.backend.numba (this module, and the intrinsics the kernels import), not
# lgc's public API: empty package modules in place of lgc/__init__.py and the backend packages
# spare it that import (~0.2 s before its first compile).
_SRC = str(Path(__file__).resolve().parents[3])
_BOOT = """
import os, sys, types
for name in ("lgc", "lgc.backend", "lgc.backend.numba"):
    m = types.ModuleType(name)
    m.__path__ = [os.path.join(sys.argv[1], *name.split("."))]
    sys.modules[name] = m
from lgc.backend.numba.prebuild import worker_main
worker_main(sys.argv[2], int(sys.argv[3]))
"""


def _run_jobs(jobs: list, workers: int) -> dict[int, tuple[float, str]]:
    done: dict[int, tuple[float, str]] = {}

    def add(disp, seconds, where):
        before = done.get(id(disp), (0.0, where))[0]
        done[id(disp)] = (before + seconds, where)

    with tempfile.TemporaryDirectory(prefix="lgc-prebuild-") as tmp:
        tmp = Path(tmp)
        (tmp / "claims").mkdir()
        spec = [(sys.modules[d.py_func.__module__].__file__, d.py_func.__module__, sig)
                for d, sig in jobs]
        (tmp / "jobs.pkl").write_bytes(pickle.dumps(spec))
        procs = []
        try:
            for w in range(workers):
                with open(tmp / f"log{w}.txt", "w") as log:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-c", _BOOT, _SRC, str(tmp), str(w)],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        close_fds=True))
        except OSError:  # no interpreter to start (embedded Python): fewer workers, or none
            pass
        try:
            for i, (disp, sig) in enumerate(jobs):
                if not claim(tmp, i):
                    continue
                t0 = time.perf_counter()
                try:
                    disp.compile(sig)
                except Exception:  # the warm-up run compiles it again and reports the error
                    continue
                add(disp, time.perf_counter() - t0, "in this process, workers beside it")
            deadline = time.monotonic() + WORKER_TIMEOUT_S
            for p in procs:
                try:
                    p.wait(max(deadline - time.monotonic(), 0.0))
                except subprocess.TimeoutExpired:  # stuck: killed below, the warm-up compiles
                    pass
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for w in range(workers):
            for i, seconds in _results(tmp, w):
                add(jobs[i][0], seconds, "in a worker process")
    return done


def claim(tmp: Path, i: int) -> bool:
    try:
        os.close(os.open(tmp / "claims" / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _results(tmp: Path, w: int) -> list[tuple[int, float]]:
    path = tmp / f"done{w}.txt"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            i, seconds = line.split()
            out.append((int(i), float(seconds)))
        except ValueError:  # a line cut short by a killed worker
            continue
    return out


def worker_main(tmp: str, w: int) -> None:
    """A worker: claim the next free job, compile it into the disk cache, and list the
    ones that compiled (job index, seconds) in done<w>.txt."""
    import importlib.util

    _compile.set_llvm_options()  # the parent's LLVM options: the same machine code
    tmp = Path(tmp)
    jobs = pickle.loads((tmp / "jobs.pkl").read_bytes())
    modules: dict[str, object] = {}
    with open(tmp / f"done{w}.txt", "w") as out:
        for i in range(len(jobs)):
            if not claim(tmp, i):
                continue
            path, name, sig = jobs[i]
            if name not in modules:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module  # Numba's cache finds the module by name
                spec.loader.exec_module(module)
                modules[name] = module
            t0 = time.perf_counter()
            try:
                modules[name].kernel.compile(sig)
            except Exception as e:  # the parent compiles it again and reports the error
                print(f"job {i} ({path}): {type(e).__name__}: {e}", file=sys.stderr)
                continue
            out.write(f"{i} {time.perf_counter() - t0:.6f}\n")
            out.flush()
