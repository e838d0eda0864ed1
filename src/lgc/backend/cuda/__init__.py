"""The CUDA target: the same fused IR as the Numba CPU backend, run as Numba CUDA kernels.

This module holds the ONE import switch for the CUDA Numba target. Today it is numba-cuda
(NVIDIA's CUDA target for Numba, which installs itself as `numba.cuda`; Numba's own bundled
`numba.cuda` is used when numba-cuda is not installed). Its successor, numba-cuda-mlir, is a
one-line change of the import below to `from numba_cuda_mlir import cuda` (and its types).
Everything else in lgc reaches CUDA through `cuda` as exported here.

Importing this package imports numba.cuda (`import lgc` does not). With no GPU, Numba's CUDA
simulator (NUMBA_ENABLE_CUDASIM=1, read when numba is first imported) runs the same kernels in
Python threads: that is how the test suite runs here.
"""

from __future__ import annotations

from ...errors import LgcError

try:
    # THE import switch (numba-cuda today; numba-cuda-mlir: `from numba_cuda_mlir import cuda`)
    from numba import cuda, float32, float64
except ImportError as e:  # numba without a CUDA target at all
    cuda = float32 = float64 = None
    _IMPORT_ERROR: Exception | None = e
else:
    _IMPORT_ERROR = None

NO_GPU = ("no CUDA GPU found (numba.cuda.is_available() is False); use backend='numba' or set "
          "NUMBA_ENABLE_CUDASIM=1 to run the simulator")


def simulator() -> bool:
    """True when the kernels run in Numba's CUDA simulator (no GPU involved)."""
    if cuda is None:
        return False
    import numba

    cfg = getattr(cuda, "config", None) or numba.config
    return bool(getattr(cfg, "ENABLE_CUDASIM", 0))


def require_device() -> None:
    """Raise an LgcError unless a CUDA GPU (or the simulator) can run kernels."""
    if cuda is None:
        raise LgcError(f"the CUDA backend needs numba.cuda, which cannot be imported "
                       f"({_IMPORT_ERROR}); install numba-cuda, or use backend='numba'")
    try:
        ok = cuda.is_available()
    except Exception:  # a broken driver install reads as no GPU
        ok = False
    if not ok:
        raise LgcError(NO_GPU)


def __getattr__(name):
    # CudaExecutable is imported on first use, so `require_device` stays cheap
    if name == "CudaExecutable":
        from .runtime import CudaExecutable

        return CudaExecutable
    if name == "sync_host":
        from .runtime import sync_host

        return sync_host
    raise AttributeError(name)


__all__ = ["NO_GPU", "CudaExecutable", "cuda", "require_device", "simulator", "sync_host"]
