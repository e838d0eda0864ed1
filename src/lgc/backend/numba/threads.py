"""A small persistent pool that runs one kernel call per thread: `run(fn, count, *args)` calls
`fn(*args, t, count)` for t in range(count), the caller taking t = 0, and returns when all are
done. Kernels compiled with nogil release the GIL, so the calls run at once.

Why not Numba's `prange`: a parallel kernel compiles 2-4x slower than the same kernel serial
(the parfor pipeline outlines and re-types its body: measured +2 s per convolution kernel, and
LeNet's cold start went 16.7 -> 4.7 s without them), and its OpenMP workers spin after each
kernel, holding the core the next kernel's threads or BLAS need. Idle workers here block on a
condition instead; a kernel splits its own outer loop by (t, T) (ops/base.py, `split_loop`).
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()  # one `run` at a time: programs may be called from several threads
_POOL: list[_Worker] = []


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
        self.error: BaseException | None = None
        self.start()

    def run(self):
        while True:
            with self.ready:
                while self.task is None:
                    self.ready.wait()
                fn, args = self.task
                self.task = None
            try:
                fn(*args)
            except BaseException as e:  # handed to the caller, which raises it
                self.error = e
            self.done.set()

    def submit(self, fn, args):
        self.done.clear()
        self.error = None
        with self.ready:
            self.task = (fn, args)
            self.ready.notify()


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
                w.done.wait()
        for w in workers:
            if w.error is not None:
                raise w.error
