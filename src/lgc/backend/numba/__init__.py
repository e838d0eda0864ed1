"""The Numba CPU backend. Importing this package imports numba (lgc itself does not)."""

from .compile import cache_dir, cache_info, clear_cache
from .runtime import NumbaExecutable

__all__ = ["NumbaExecutable", "cache_dir", "cache_info", "clear_cache"]
