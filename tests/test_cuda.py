"""The CUDA suite (tests/cuda) in its own process under Numba's CUDA simulator, so this
process never imports numba.cuda; and the no-GPU error of a plain process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    return {**env, **extra}


def _cuda_importable(env) -> bool:
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda"], env=env,
                           capture_output=True, text=True)
    return probe.returncode == 0


def test_cuda_suite_passes_under_the_simulator():
    env = _env(NUMBA_ENABLE_CUDASIM="1")
    if not _cuda_importable(env):
        pytest.skip("numba.cuda cannot be imported in this environment")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/cuda"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900)
    tail = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and "failed" not in r.stdout and "skipped" not in r.stdout, tail


def test_cuda_backend_without_gpu_or_simulator_raises_lgc_error():
    env = _env()
    if not _cuda_importable(env):
        pytest.skip("numba.cuda cannot be imported in this environment")
    script = ("import lgc\n"
              "from numba import cuda\n"
              "try:\n"
              "    lgc.set_backend('cuda')\n"
              "    print('GPU' if cuda.is_available() else 'NO ERROR')\n"
              "except lgc.LgcError as e:\n"
              "    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    if out == "GPU":
        return  # a real GPU: nothing to refuse
    assert out == ("ERR no CUDA GPU found (numba.cuda.is_available() is False); use "
                   "backend='numba' or set NUMBA_ENABLE_CUDASIM=1 to run the simulator")
