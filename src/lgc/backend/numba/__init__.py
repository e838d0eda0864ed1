"""The Numba CPU backend. Importing this package imports numba (lgc itself does not)."""

import os

# Numba's OpenMP workers spin after each parallel kernel (GOMP's default spin count is in the
# hundreds of thousands), and the convolution kernels run on lgc's own threads right after such
# kernels: the spin would hold their core. Read once, when numba starts its threads (later than
# this import); a value the user set wins. Measured on 2 cores, LeNet/CNN train step (median):
# spin 0: 6.4/21.5 ms, 2000: 3.9/14.0 ms, 20000: 4.9/39.6 ms, 200000: 7.3/132 ms.
os.environ.setdefault("GOMP_SPINCOUNT", "2000")

from .compile import cache_dir, cache_info, clear_cache  # noqa: E402
from .runtime import NumbaExecutable  # noqa: E402

__all__ = ["NumbaExecutable", "cache_dir", "cache_info", "clear_cache"]
