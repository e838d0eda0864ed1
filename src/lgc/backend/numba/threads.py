"""A small persistent pool that runs one kernel call per thread: `run(fn, count, *args)` calls
`fn(*args, t, count)` for t in range(count), the caller taking t = 0, and returns when all are
done. Kernels compiled with nogil release the GIL, so the calls run at once.

Why not Numba's `prange`: a parallel kernel compiles 2-4x slower than the same kernel serial
(the parfor pipeline outlines and re-types its body: measured +2 s per convolution kernel, and
LeNet's cold start went 16.7 -> 4.7 s without them), and its OpenMP workers spin after each
kernel, holding the core the next kernel's threads or BLAS need. A kernel splits its own outer
loop by (t, T) (ops/base.py, `split_loop`).

Waking a blocked thread costs 20-60 us on a VM (the OS wakes a halted vCPU, then the GIL
changes hands): as much as a small kernel. So both sides spin a little first, outside the GIL,
in compiled code (`_spin`, on flags in a NumPy array): a worker that finished a call watches
for the next one for LINGER_CYCLES (~0.4 ms: the gaps between a train step's threaded kernels,
and between steps) before it blocks on its condition, and the caller watches for the workers'
ends for WAIT_CYCLES before it blocks on their events.
"""

from __future__ import annotations

import os
import threading

import numpy as np

_LOCK = threading.Lock()  # one `run` at a time: programs may be called from several threads
_POOL: list[_Worker] = []
LINGER_CYCLES = 1_000_000  # a worker's watch for the next call after one (~0.4 ms)
WAIT_CYCLES = 2_000_000  # the caller's watch for the workers' ends (~0.8 ms)
# flag slots, one cache line apart: a call posted, the call done
POSTED, DONE = 0, 8

_SPIN = """def kernel(flags, slot, cycles_max):
    start = cycles()
    while load_acquire(flags, slot) == 0:
        if cycles() - start > cycles_max:
            return False
    return True
"""
# where the cycle counter may not be readable from user space (llvm.readcyclecounter is RDTSC
# on x86 only): a bound on the loop's turns instead (~0.3 ns a turn on the x86 here)
_SPIN_TURNS = """def kernel(flags, slot, cycles_max):
    for i in range(cycles_max):
        if load_acquire(flags, slot) != 0:
            return True
    return load_acquire(flags, slot) != 0
"""
_spin_fn: list = []


def _spin(flags: np.ndarray, slot: int, cycles_max: int) -> bool:
    """Wait, without the GIL, until flags[slot] != 0 or about `cycles_max` cycles passed."""
    if not _spin_fn:
        import platform

        from .compile import load_kernel

        x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
        fn = load_kernel(_SPIN if x86 else _SPIN_TURNS, {"cache": True, "nogil": True})
        fn(flags, slot, 0)
        _spin_fn.append(fn.overloads[fn.signatures[0]].entry_point)  # skip the typing
    return _spin_fn[0](flags, slot, cycles_max)


def _forget_after_fork() -> None:
    """A forked child has none of the parent's threads: it starts a pool of its own."""
    global _LOCK
    _LOCK = threading.Lock()
    _POOL.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


class _Worker(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True, name="lgc-kernel")
        self.ready = threading.Condition()
        self.task = None
        self.done = threading.Event()
        self.flags = np.zeros(2 * DONE, np.int64)
        self.error: BaseException | None = None
        self.start()

    def run(self):
        while True:
            with self.ready:
                while self.task is None:
                    self.ready.wait()
                fn, args = self.task
                self.task = None
                self.flags[POSTED] = 0
            try:
                fn(*args)
            except BaseException as e:  # handed to the caller, which raises it
                self.error = e
            self.done.set()
            self.flags[DONE] = 1  # after the event: a caller that saw the flag never blocks
            _spin(self.flags, POSTED, LINGER_CYCLES)  # the next call, if it comes soon

    def submit(self, fn, args):
        self.done.clear()
        self.error = None
        self.flags[DONE] = 0
        with self.ready:
            self.task = (fn, args)
            self.flags[POSTED] = 1  # seen at once by a worker still watching
            self.ready.notify()

    def wait(self):
        if not self.flags[DONE]:
            _spin(self.flags, DONE, WAIT_CYCLES)
        self.done.wait()


def bind(fn, count: int):
    """`fn` (a kernel taking (t, T) last) as a function of the other arguments, run in `count`
    threads."""
    return lambda *args: run(fn, count, *args)


def run(fn, count: int, *args) -> None:
    """fn(*args, t, count) for every t in range(count), in `count` threads."""
    if count <= 1:
        fn(*args, 0, 1)
        return
    with _LOCK:
        while len(_POOL) < count - 1:
            _POOL.append(_Worker())
        workers = _POOL[:count - 1]
        for t, w in enumerate(workers, start=1):
            w.submit(fn, (*args, t, count))
        try:
            fn(*args, 0, count)
        finally:
            for w in workers:
                w.wait()
        for w in workers:
            if w.error is not None:
                raise w.error
