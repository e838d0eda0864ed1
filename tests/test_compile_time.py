"""Compile-time machinery of the Numba backend: warm starts load machine code without Numba's
compiler set-up, and what they load computes exactly what the compiling process computed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lgc

WARM_SCRIPT = textwrap.dedent("""
    import sys, hashlib, numpy as np, lgc
    x = lgc.dlarray(np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6), "CB")
    def f(x):
        h = lgc.softmax(lgc.tanh(x) * 2.0)  # softmax has its own kernel: several kernels
        y = lgc.sum(h * lgc.exp(-x) + lgc.relu(x))
        return y, lgc.dlgradient(y, x)
    cf = lgc.compile(f, backend="numba")
    y, g = cf(x)
    s = cf.lower(x).stats
    digest = hashlib.sha256(np.asarray(y).tobytes() + np.asarray(g).tobytes()).hexdigest()
    print(s["cache_hits"], s["cache_misses"], digest, "numba.np.npyimpl" in sys.modules)
""")


def _run(script: str, cache) -> list[str]:
    env = {**os.environ, "LGC_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True).stdout.split()


def test_warm_process_loads_without_compiler_setup_and_matches_bitwise(tmp_path):
    _, misses, digest, _ = _run(WARM_SCRIPT, tmp_path)
    assert int(misses) > 0
    hits, misses2, digest2, registries = _run(WARM_SCRIPT, tmp_path)
    assert int(misses2) == 0 and int(hits) > 0
    assert digest2 == digest  # the loaded machine code computes the same bits
    # loading needed none of Numba's typing/lowering registries (the 0.3 s context refresh)
    assert registries == "False"


def test_loading_cache_misses_fall_back_to_compiling(tmp_path, monkeypatch):
    """A kernel whose machine code is not on disk (new argument types) still compiles in a
    process that loaded others without the context refresh."""
    monkeypatch.setenv("LGC_CACHE_DIR", str(tmp_path))
    cf = lgc.compile(lambda x: lgc.sigmoid(x) * 7.0 - lgc.exp(x), backend="numba")
    x64 = np.linspace(-1, 1, 6).reshape(2, 3)
    y64 = np.asarray(cf(lgc.dlarray(x64, "CB")))
    y32 = np.asarray(cf(lgc.dlarray(x64.astype(np.float32), "CB")))
    np.testing.assert_allclose(y32, y64, rtol=1e-6)
    assert y32.dtype == np.float32


def _run_env(script: str, cache, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "LGC_CACHE_DIR": str(cache), **env}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)


def test_worker_processes_compile_new_kernels_into_the_cache(tmp_path):
    """A cold start with a worker: the worker compiles some kernels, the results are the bits
    of a cold start without workers, and the next process loads everything from disk."""
    serial = _run_env(WARM_SCRIPT, tmp_path / "serial", LGC_COMPILE_WORKERS="0")
    par = _run_env(WARM_SCRIPT, tmp_path / "par", LGC_COMPILE_WORKERS="1", LGC_DEBUG="1")
    assert "(in a worker process)" in par.stderr
    _, misses, digest, _ = par.stdout.split()
    assert int(misses) > 0 and digest == serial.stdout.split()[2]
    again = _run_env(WARM_SCRIPT, tmp_path / "par", LGC_COMPILE_WORKERS="1").stdout.split()
    assert int(again[1]) == 0 and again[2] == digest


POOL_JOB_SCRIPT = textwrap.dedent("""
    import numpy as np, lgc
    from lgc.backend.numba import prebuild, threads
    seen = []
    run_jobs = prebuild._run_jobs
    def spy(jobs, workers):
        seen.extend(d for d, _ in jobs)
        return run_jobs(jobs, workers)
    prebuild._run_jobs = spy
    x = lgc.dlarray(np.linspace(-2, 2, 24).reshape(4, 6), "CB")
    f = lambda x: lgc.softmax(lgc.tanh(x) * 2.0) + lgc.sum(lgc.exp(-x), 1)
    lgc.compile(f, backend="numba")(x)
    print(threads.pool_kernel()[0] in seen, len(seen))
""")


def test_cold_start_compiles_the_pools_loop_beside_the_kernels(tmp_path):
    """On a cold cache the threads' compiled loop (`threads.pool_kernel`, ~0.5 s to compile)
    is one of prebuild's jobs, not compiled at the warm-up run's first threaded call."""
    pooled, jobs = _run_env(POOL_JOB_SCRIPT, tmp_path, LGC_COMPILE_WORKERS="1").stdout.split()
    assert pooled == "True" and int(jobs) >= 3


def test_kernel_failing_in_a_worker_still_names_op_and_layer(tmp_path, monkeypatch):
    import pytest

    from lgc.dlarray import provenance
    from lgc.errors import CompileError
    from lgc.ops.elementwise import Exp

    monkeypatch.setenv("LGC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LGC_COMPILE_WORKERS", "1")
    monkeypatch.setattr(Exp, "expr_cpu", "fast_exp({0}, 'oops')")
    x = lgc.dlarray(np.ones((2, 3)), "CB")

    def f(x):
        with provenance("conv7"):
            return lgc.sum(lgc.exp(x) + 0.5, 1) * 2.0

    with pytest.raises(CompileError, match=r"fused.*conv7"):
        lgc.compile(f, backend="numba")(x)


def test_worker_that_dies_holding_claims_costs_only_time(tmp_path, monkeypatch):
    """Jobs a worker claimed but never compiled are compiled by the warm-up run."""
    from lgc.backend.numba import prebuild

    monkeypatch.setenv("LGC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LGC_COMPILE_WORKERS", "1")
    monkeypatch.setattr(prebuild, "_BOOT", textwrap.dedent("""
        import os, sys
        for i in range(100):  # claim every job, compile nothing, exit
            try:
                os.close(os.open(os.path.join(sys.argv[2], "claims", str(i)),
                                 os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except OSError:
                pass
    """))
    x = np.linspace(-2, 2, 24).reshape(4, 6)
    cf = lgc.compile(lambda x: lgc.softmax(lgc.tanh(x) * 2.0) + lgc.sum(lgc.exp(-x), 1),
                     backend="numba")
    y = np.asarray(cf(lgc.dlarray(x, "CB")))
    e = np.exp(2.0 * np.tanh(x))
    np.testing.assert_allclose(y, e / e.sum(0) + np.exp(-x).sum(1, keepdims=True), rtol=1e-12)
    stats = cf.lower(lgc.dlarray(x, "CB")).stats
    assert stats["cache_misses"] >= 2 and stats["cache_hits"] + stats["cache_misses"] == \
        stats["n_kernels"]


def test_worker_count_follows_idle_cores_unless_set(monkeypatch):
    from lgc.backend.numba import prebuild

    monkeypatch.delenv("LGC_COMPILE_WORKERS", raising=False)
    monkeypatch.setattr(prebuild.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3},
                        raising=False)
    monkeypatch.setattr(prebuild, "_busy_cores", lambda: 0.05)
    assert prebuild.n_workers() == (3, False)  # never more than the other cores
    monkeypatch.setattr(prebuild, "_busy_cores", lambda: 1.2)
    assert prebuild.n_workers() == (2, False)
    monkeypatch.setattr(prebuild, "_busy_cores", lambda: 3.3)
    assert prebuild.n_workers() == (0, False)  # busy machine: compile here only
    monkeypatch.setenv("LGC_COMPILE_WORKERS", "2")
    assert prebuild.n_workers() == (2, True)
    monkeypatch.setenv("LGC_COMPILE_WORKERS", "0")
    assert prebuild.n_workers() == (0, True)


def test_busy_cores_is_the_machine_now_not_the_load_average(monkeypatch, tmp_path):
    """_busy_cores averages the threads runnable now outside this process (/proc/loadavg's
    running count less this process's running threads, a few looks): a machine idle now
    reads ~0 busy cores whatever its 1-minute load average says."""
    import builtins

    from lgc.backend.numba import prebuild

    assert prebuild._running("0.52 0.83 0.92 3/108 8170\n") == 3
    looks = iter(["2.10 1.50 1.20 1/107 9000\n", "2.10 1.50 1.20 2/107 9000\n"] * 5)
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            fake = tmp_path / "loadavg"
            fake.write_text(next(looks))
            return real_open(fake, *args, **kwargs)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(prebuild.os, "getloadavg", lambda: (2.1, 1.5, 1.2))
    monkeypatch.setattr(prebuild, "_own_running", lambda: 1)  # the thread that reads
    assert prebuild._busy_cores() == pytest.approx(0.5)  # 1.5 runnable, 1 of them this one
    monkeypatch.undo()
    assert prebuild._own_running() >= 1  # this thread, running the test


def test_a_warm_build_does_not_look_at_the_machine(monkeypatch):
    """prebuild returns before `n_workers` (whose look at the machine sleeps ~20 ms) when the
    program has fewer than two new kernels: the second build of a program, a warm start."""
    from lgc.backend.numba import prebuild

    f = lgc.compile(lambda x: lgc.tanh(x) * 2.0 + lgc.exp(x), backend="numba")
    x = lgc.dlarray(np.linspace(-1, 1, 6).reshape(2, 3), "CB")
    f(x)

    def looked():
        raise AssertionError("n_workers called on a warm build")
    monkeypatch.setattr(prebuild, "n_workers", looked)
    again = lgc.compile(lambda x: lgc.tanh(x) * 2.0 + lgc.exp(x), backend="numba")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(f(x)))
