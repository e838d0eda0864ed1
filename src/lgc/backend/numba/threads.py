"""A small persistent pool that runs one kernel call per thread: `run(fn, count, *args)` calls
`fn(*args, t, count)` for t in range(count), the caller taking t = 0, and returns when all are
done. Kernels compiled with nogil release the GIL, so the calls run at once. `launch(address,
block, count)` does the same for a prepared call through a trampoline (launch.py): the
workers run it from compiled code, without the GIL.

Why not Numba's `prange`: a parallel kernel compiles 2-4x slower than the same kernel serial
(the parfor pipeline outlines and re-types its body: measured +2 s per convolution kernel, and
LeNet's cold start went 16.7 -> 4.7 s without them), and its OpenMP workers spin after each
kernel, holding the core the next kernel's threads or BLAS need. A kernel splits its own outer
loop by (t, T) (ops/base.py, `split_loop`).

Waking a blocked thread costs 20-60 us on a VM (the OS wakes a halted vCPU): as much as a
small kernel. So a worker that finished a call watches for the next one for LINGER_CYCLES
(~0.4 ms: the gaps between a train step's threaded kernels, and between steps) in compiled
code outside the GIL (`serve`), before it blocks on its condition; the caller watches for the
workers' ends before it blocks. A call posted by `launch` runs inside `serve` itself; one
posted by `run` (a Python call) returns to Python first and must then take the GIL, which the
caller releases only once its own part is under way: `launch` avoids that second wait.

A worker's state (its row of FLAGS, a cache line each for the post and the end): IDLE,
NATIVE (a trampoline call posted), PYTHON (a Python call posted), ASLEEP (blocked on its
condition: a poster that finds it so, by a failed compare-and-swap from IDLE, wakes it).
"""

from __future__ import annotations

import os
import platform
import threading

import numpy as np

_LOCK = threading.Lock()  # one call at a time: programs may be called from several threads
_POOL: list[_Worker] = []
LINGER_CYCLES = 1_000_000  # a worker's watch for the next call after one (~0.4 ms)
WAIT_CYCLES = 2_000_000  # the caller's watch for the workers' ends of a Python call (~0.8 ms)
WAIT_SPINS = 4000  # turns of the caller's watch for a launched call's ends before it yields
PATIENCE = 20_000_000  # yields (~1 us each) before that watch takes a worker for lost
MAX_WORKERS = 255

# a worker's row of FLAGS: the post's cache line, then the end's
STATE, FN, BLOCK, PART, PARTS, DONE, STATUS, WAKE = 0, 1, 2, 3, 4, 8, 9, 10
IDLE, NATIVE, PYTHON, ASLEEP = 0, 1, 2, -1
FLAGS = np.zeros((MAX_WORKERS, 16), np.int64)


def _watches(x86: bool) -> tuple[str, str]:
    """The sources of the two watches, `serve` (a worker's) and `wait_done` (a caller's for a
    Python call's end), with their deadlines on the cycle counter (x86: llvm.readcyclecounter
    is RDTSC there) or on a count of turns elsewhere (~0.3 ns a turn on the x86 here)."""
    start, waited = ("cycles()", "cycles() - start") if x86 else ("0", "turns")
    serve = f"""def kernel(flags, cycles_max):
    while True:
        start, turns = {start}, 0
        state = load_acquire(flags, {STATE})
        while state == {IDLE}:
            turns += 1
            if {waited} > cycles_max and compare_swap(flags, {STATE}, {IDLE}, {ASLEEP}):
                return {ASLEEP}
            state = load_acquire(flags, {STATE})
        if state != {NATIVE}:
            return state
        fn, block, t, count = flags[{FN}], flags[{BLOCK}], flags[{PART}], flags[{PARTS}]
        store_release(flags, {STATE}, {IDLE})
        flags[{STATUS}] = call_trampoline(fn, block, t, count)
        store_release(flags, {DONE}, 1)
"""
    wait_done = f"""def kernel(flags, cycles_max):
    start, turns = {start}, 0
    while load_acquire(flags, {DONE}) == 0:
        turns += 1
        if {waited} > cycles_max:
            return False
    return True
"""
    return serve, wait_done


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
_SERVE, _WAIT_DONE = _watches(_X86)

# posts a call to workers 1..count-1; returns how many were asleep (marked in WAKE)
_POST = f"""def kernel(flags, fn, block, count):
    asleep = 0
    for w in range(count - 1):
        f = flags[w]
        f[{FN}], f[{BLOCK}], f[{PART}], f[{PARTS}], f[{DONE}] = fn, block, w + 1, count, 0
        f[{WAKE}] = not compare_swap(f, {STATE}, {IDLE}, {NATIVE})
        asleep += f[{WAKE}]
    return asleep
"""
# runs part 0, then waits for the workers' ends (yielding its core after `spins` turns, giving
# up after `patience` yields: a worker that never ends is a bug, better reported than hung)
_FINISH = f"""def kernel(flags, fn, block, count, spins, patience):
    status = call_trampoline(fn, block, 0, count)
    for w in range(count - 1):
        f = flags[w]
        turns = 0
        while load_acquire(f, {DONE}) == 0:
            turns += 1
            if turns > spins:
                sched_yield()
                if turns > spins + patience:
                    return -1
        status |= f[{STATUS}]
    return status
"""
_COMPILED: dict[str, object] = {}


def _compiled(name: str, source: str, *example):
    """The entry point of a pool helper (compiled once, cached on disk; typing skipped)."""
    fn = _COMPILED.get(name)
    if fn is None:
        from .compile import load_kernel

        kernel = load_kernel(source, {"cache": True, "nogil": True})
        kernel.compile(tuple(kernel.typeof_pyval(a) for a in example))
        fn = _COMPILED[name] = kernel.overloads[kernel.signatures[0]].entry_point
    return fn


def _serve(flags: np.ndarray, cycles_max: int) -> int:
    return _compiled("serve", _SERVE, flags, 0)(flags, cycles_max)


def _wait_done(flags: np.ndarray, cycles_max: int) -> bool:
    return _compiled("wait", _WAIT_DONE, flags, 0)(flags, cycles_max)


def _forget_after_fork() -> None:
    """A forked child has none of the parent's threads: it starts a pool of its own."""
    global _LOCK
    _LOCK = threading.Lock()
    _POOL.clear()
    FLAGS[:] = 0


os.register_at_fork(after_in_child=_forget_after_fork)


class _Worker(threading.Thread):
    def __init__(self, row: int):
        super().__init__(daemon=True, name="lgc-kernel")
        self.ready = threading.Condition()
        self.task = None
        self.done = threading.Event()
        self.flags = FLAGS[row]
        self.error: BaseException | None = None
        self.start()

    def run(self):
        flags = self.flags
        while True:
            state = _serve(flags, LINGER_CYCLES)  # runs launched calls until a Python one
            if state == ASLEEP:
                with self.ready:
                    while flags[STATE] == ASLEEP:
                        self.ready.wait()
                continue
            fn, args = self.task
            self.task = None
            flags[STATE] = IDLE
            try:
                fn(*args)
            except BaseException as e:  # handed to the caller, which raises it
                self.error = e
            self.done.set()
            flags[DONE] = 1  # after the event: a caller that saw the flag never blocks

    def post(self, state: int) -> None:
        """Mark a call posted (its fields already written), waking the worker if asleep."""
        with self.ready:
            if self.flags[STATE] == ASLEEP:
                self.flags[STATE] = state
                self.ready.notify()
            else:  # watching: it sees the state at once
                self.flags[STATE] = state

    def submit(self, fn, args):
        self.done.clear()
        self.error = None
        self.task = (fn, args)
        self.flags[DONE] = 0
        self.post(PYTHON)

    def wait(self):
        if not self.flags[DONE]:
            _wait_done(self.flags, WAIT_CYCLES)
        self.done.wait()


def _workers(count: int) -> list[_Worker]:
    if count - 1 > MAX_WORKERS:
        raise ValueError(f"threads: at most {MAX_WORKERS + 1} threads, asked for {count}")
    while len(_POOL) < count - 1:
        _POOL.append(_Worker(len(_POOL)))
    return _POOL[:count - 1]


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
        workers = _workers(count)
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


def launch(address: int, block: int, count: int) -> int:
    """The trampoline at `address` on the argument block at `block` (launch.py), in `count`
    threads: part t of count in thread t, the caller taking part 0. Returns nonzero when a
    part raised (the trampoline's status)."""
    post = _compiled("post", _POST, FLAGS, 0, 0, 2)
    finish = _compiled("finish", _FINISH, FLAGS, 0, 0, 2, 0, 0)
    with _LOCK:
        workers = _workers(count)
        if post(FLAGS, address, block, count):
            for worker in workers:
                if worker.flags[WAKE]:
                    worker.post(NATIVE)
        status = finish(FLAGS, address, block, count, WAIT_SPINS, PATIENCE)
    if status < 0:
        raise RuntimeError("threads.launch: a worker of lgc's pool never finished its part")
    return status
