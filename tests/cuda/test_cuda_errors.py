"""The CUDA backend's errors: no GPU (and no simulator) is a clear LgcError at set_backend and
at the first compile; a kernel that fails names its op and layer."""

from __future__ import annotations

import os

import pytest

if not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("LGC_CUDA_TESTS")):
    pytest.skip("CUDA suite: run by tests/test_cuda.py in a simulator subprocess, or with "
                "LGC_CUDA_TESTS=1 on a GPU", allow_module_level=True)

import numpy as np  # noqa: E402

import lgc  # noqa: E402
import lgc.backend.cuda as lgc_cuda  # noqa: E402
from lgc.errors import CompileError, LgcError  # noqa: E402

MESSAGE = ("no CUDA GPU found (numba.cuda.is_available() is False); use backend='numba' or set "
           "NUMBA_ENABLE_CUDASIM=1 to run the simulator")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(lgc_cuda.cuda, "is_available", lambda: False)


def test_set_backend_without_gpu_says_what_to_do(no_gpu):
    old = lgc.get_backend()
    with pytest.raises(LgcError) as e:
        lgc.set_backend("cuda")
    assert str(e.value) == MESSAGE
    assert lgc.get_backend() == old


def test_compile_without_gpu_says_what_to_do(no_gpu):
    x = lgc.dlarray(np.ones((2, 3)), "CB")
    with pytest.raises(LgcError, match=r"no CUDA GPU found.*NUMBA_ENABLE_CUDASIM=1"):
        lgc.compile(lambda x: lgc.relu(x) * 2.0, backend="cuda")(x)


def test_missing_cuda_target_is_an_lgc_error(monkeypatch):
    monkeypatch.setattr(lgc_cuda, "cuda", None)
    monkeypatch.setattr(lgc_cuda, "_IMPORT_ERROR", ImportError("no module named numba.cuda"))
    with pytest.raises(LgcError, match="needs numba.cuda.*install numba-cuda"):
        lgc_cuda.require_device()


def test_kernel_that_fails_names_op_and_layer(monkeypatch):
    from lgc.dlarray import provenance
    from lgc.ops.elementwise import Exp

    monkeypatch.setattr(Exp, "expr", "math.exp({0}, 'oops')")
    x = lgc.dlarray(np.ones((2, 3)), "CB")

    def f(x):
        with provenance("conv7"):
            return lgc.exp(x) + 0.5

    with pytest.raises(CompileError, match=r"fused.*conv7"):
        lgc.compile(f, backend="cuda")(x)


def test_numpy_in_device_code_is_a_compile_error(monkeypatch):
    from lgc.ops.elementwise import Exp

    monkeypatch.setattr(Exp, "expr", "np.expm1({0})")
    x = lgc.dlarray(np.ones((2, 3)), "CB")
    with pytest.raises(CompileError, match="NumPy"):
        lgc.compile(lambda x: lgc.exp(x) * 3.0, backend="cuda")(x)
