"""A small persistent pool that runs one kernel call per thread: `run(fn, count, *args)` calls
`fn(*args, t, count)` for t in range(count), the caller taking t = 0, and returns when all are
done. Kernels compiled with nogil release the GIL, so the calls run at once. `launch(address,
block, count)` does the same for a prepared call through a trampoline (launch.py): the
workers run it from compiled code, without the GIL; `launch_program(program, count)` runs a
sequence of them, each posted from compiled code as soon as the last is done.

Why not Numba's `prange`: a parallel kernel compiles 2-4x slower than the same kernel serial
(the parfor pipeline outlines and re-types its body: measured +2 s per convolution kernel, and
LeNet's cold start went 16.7 -> 4.7 s without them), and its OpenMP workers spin after each
kernel, holding the core the next kernel's threads or BLAS need. A kernel splits its own outer
loop by (t, T) (ops/base.py, `split_loop`).

Waking a blocked thread costs 20-60 us on a VM (the OS wakes a halted vCPU): as much as a
small kernel. So a worker that finished a call watches for the next one for LINGER_CYCLES
(~0.4 ms: the gaps between a train step's threaded kernels, and between steps) in compiled
code outside the GIL (`_pool`'s SERVE), before it blocks on its condition; the caller watches
for the workers' ends before it blocks. A call posted by `launch` runs inside that watch
itself; one posted by `run` (a Python call) returns to Python first and must then take the
GIL, which the caller releases only once its own part is under way: `launch` avoids that
second wait (an empty call on two threads: ~2.7 us launched, 20-30 us through Python).

A worker's state (its row of FLAGS, a cache line each for the post and the end): IDLE,
NATIVE (a trampoline call posted), PYTHON (a Python call posted), ASLEEP (blocked on its
condition: a poster that finds it so, by a failed compare-and-swap from IDLE, wakes it).
A worker takes a posted part by compare-and-swap from NATIVE; the caller, its own part done,
takes back the parts still posted and runs them itself. So a worker that another process's
load has descheduled (or that is still waking) costs its part's time, not the time until
the OS runs it again (milliseconds: with one busy process beside it, the MLP train step
went 2.6-4.6 -> 1.4-1.7 ms; alone, 0.5).
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
# the caller's watch for the ends of a launched call's parts that workers took: turns (~0.3-
# 0.6 ms: longer than parts differ on a quiet machine, the LSTM's weight gradients included)
# before it naps (a yield would hand a busy process sharing the core the rest of its time
# slice), and turns past them (a nap counts NAP_US: ~20 s) before it takes a worker for lost
WAIT_SPINS = 1_000_000
PATIENCE = 20_000_000
MAX_WORKERS = 255

# a worker's row of FLAGS: the post's cache line, then the end's
STATE, FN, BLOCK, PART, PARTS, DONE, STATUS, WAKE = 0, 1, 2, 3, 4, 8, 9, 10
IDLE, NATIVE, PYTHON, ASLEEP = 0, 1, 2, -1
FLAGS = np.zeros((MAX_WORKERS, 16), np.int64)


SERVE, WAIT, POST, FINISH, RUN = range(5)  # what `_pool` does
# how a RUN stopped, in the low bits of its result (the call it stopped at above them)
RAN, ASLEEP_AT, FAILED_AT, LOST_AT = range(4)


def _post(pad: str) -> str:
    """Source: post `fn` on `block` to workers 0..count-2 as parts 1..count-1, counting in
    `asleep` those found asleep (each marked in WAKE, for Python to wake)."""
    return f"""{pad}asleep = 0
{pad}for u in range(count - 1):
{pad}    f = flags[u]
{pad}    f[{FN}], f[{BLOCK}], f[{PART}], f[{PARTS}], f[{DONE}] = fn, block, u + 1, count, 0
{pad}    f[{WAKE}] = not compare_swap(f, {STATE}, {IDLE}, {NATIVE})
{pad}    asleep += f[{WAKE}]
"""


def _finish(pad: str) -> str:
    """Source: run part 0 of `fn` on `block`, then each part no worker has taken yet (taken
    back from its worker by compare-and-swap: a worker descheduled by another process's
    load, or still waking, would otherwise hold the call up for its whole wait), then wait
    for the workers' ends (napping after `a` turns, giving up after `b` more); `status` the
    parts' (-1: lost)."""
    return f"""{pad}status = call_trampoline(fn, block, 0, count)
{pad}for u in range(count - 1):
{pad}    f = flags[u]
{pad}    if compare_swap(f, {STATE}, {NATIVE}, {IDLE}):
{pad}        status |= call_trampoline(fn, block, u + 1, count)
{pad}        continue
{pad}    turns = 0
{pad}    while load_acquire(f, {DONE}) == 0 and status >= 0:
{pad}        turns += 1
{pad}        if turns > a:
{pad}            nap(NAP_US)
{pad}            turns += NAP_US
{pad}            if turns > a + b:
{pad}                status = -1
{pad}    if status >= 0:
{pad}        status |= f[{STATUS}]
"""


def _pool_source(x86: bool) -> str:
    """The pool's compiled side, one function (one compile) doing one of five things on
    flags = FLAGS (its row w: a worker's):
    SERVE (a worker): run the calls launched to it until a Python one comes (returns PYTHON)
      or none comes for `a` cycles (returns ASLEEP, the state set so by compare-and-swap);
    WAIT (the caller of a Python call): watch worker w's end for `a` cycles (returns 1 if seen);
    POST (the caller of a launch): post the trampoline `fn` on `block` to workers 0..count-2
      as parts 1..count-1; returns how many were asleep (each marked in WAKE, to be woken);
    FINISH (the same caller): run part 0 and the parts no worker took, then wait for the
      workers' ends (napping after `a` turns, giving up after `b` more: a worker that never
      ends is a bug, better reported than hung, -1); returns the parts' status (nonzero: a
      part raised);
    RUN (a caller): the prepared calls of `program` (rows of trampoline, block, threads, and
      the cycles the call took, written here: 0 where there is no cycle counter) from row `fn`
      on, each posted and finished as above (one thread: run in place); returns 4·i + RAN
      when all ran (i their count), or 4·i + why it stopped at row i: ASLEEP_AT (a worker to
      wake: the call is posted), FAILED_AT (a part raised), LOST_AT (a worker lost).
    Deadlines run on the cycle counter (x86: llvm.readcyclecounter is RDTSC) or on a count of
    turns elsewhere (~0.3 ns a turn on the x86 here)."""
    start, waited = ("cycles()", "cycles() - start") if x86 else ("0", "turns")
    took = "cycles() - began" if x86 else "0"
    return f"""def kernel(flags, program, w, op, fn, block, count, a, b):
    if op == {SERVE}:
        f = flags[w]
        while True:
            start, turns = {start}, 0
            state = load_acquire(f, {STATE})
            while state == {IDLE}:
                turns += 1
                if {waited} > a and compare_swap(f, {STATE}, {IDLE}, {ASLEEP}):
                    return {ASLEEP}
                state = load_acquire(f, {STATE})
            if state != {NATIVE}:
                return state
            if compare_swap(f, {STATE}, {NATIVE}, {IDLE}):  # else the caller took it back
                f[{STATUS}] = call_trampoline(f[{FN}], f[{BLOCK}], f[{PART}], f[{PARTS}])
                store_release(f, {DONE}, 1)
    if op == {WAIT}:
        f = flags[w]
        start, turns = {start}, 0
        while load_acquire(f, {DONE}) == 0:
            turns += 1
            if {waited} > a:
                return 0
        return 1
    if op == {POST}:
{_post(" " * 8)}        return asleep
    if op == {RUN}:
        i = fn
        while i < program.shape[0]:
            fn, block, count = program[i, 0], program[i, 1], program[i, 2]
            began = {start}
{_post(" " * 12)}            if asleep:
                return 4 * i + {ASLEEP_AT}
{_finish(" " * 12)}            program[i, 3] = {took}
            if status < 0:
                return 4 * i + {LOST_AT}
            if status:
                return 4 * i + {FAILED_AT}
            i += 1
        return 4 * i + {RAN}
{_finish(" " * 4)}    return status
"""


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
_POOL_FN: list = []


_NO_PROGRAM = np.zeros((0, 4), np.int64)


def pool_kernel() -> tuple:
    """(dispatcher, argument types) of `_pool_source`'s function, not yet compiled: on a cold
    cache prebuild.py compiles it beside the program's kernels (~0.5 s, else paid at the first
    threaded call)."""
    from .compile import load_kernel

    kernel = load_kernel(_pool_source(_X86), {"cache": True, "nogil": True})
    return kernel, tuple(kernel.typeof_pyval(v) for v in (FLAGS, _NO_PROGRAM, 0, 0, 0, 0, 0,
                                                          0, 0))


def _pool(w: int, op: int, fn: int = 0, block: int = 0, count: int = 0, a: int = 0,
          b: int = 0, program: np.ndarray = _NO_PROGRAM) -> int:
    """`_pool_source`'s function on FLAGS (compiled once, cached on disk; typing skipped)."""
    if not _POOL_FN:
        kernel, sig = pool_kernel()
        kernel.compile(sig)
        _POOL_FN.append(kernel.overloads[kernel.signatures[0]].entry_point)
    return _POOL_FN[0](FLAGS, program, w, op, fn, block, count, a, b)


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
        self.row, self.flags = row, FLAGS[row]
        self.error: BaseException | None = None
        self.start()

    def run(self):
        flags = self.flags
        while True:
            state = _pool(self.row, SERVE, a=LINGER_CYCLES)  # launched calls, until a Python one
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
        """Mark a call posted (its fields already written), waking the worker if asleep (a
        worker still watching sees the state at once)."""
        with self.ready:
            asleep = self.flags[STATE] == ASLEEP
            self.flags[STATE] = state
            if asleep:
                self.ready.notify()

    def submit(self, fn, args):
        self.done.clear()
        self.error = None
        self.task = (fn, args)
        self.flags[DONE] = 0
        self.post(PYTHON)

    def wait(self):
        if not self.flags[DONE]:
            _pool(self.row, WAIT, a=WAIT_CYCLES)
        self.done.wait()


def _workers(count: int) -> list[_Worker]:
    if count - 1 > MAX_WORKERS:
        raise ValueError(f"threads: at most {MAX_WORKERS + 1} threads, asked for {count}")
    while len(_POOL) < count - 1:
        _POOL.append(_Worker(len(_POOL)))
    return _POOL[:count - 1]


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
    with _LOCK:
        workers = _workers(count)
        if _pool(0, POST, address, block, count):
            _wake(workers)
        status = _pool(0, FINISH, address, block, count, WAIT_SPINS, PATIENCE)
    if status < 0:
        raise _lost()
    return status


def _wake(workers: list[_Worker]) -> None:
    """Wake the workers a post found asleep (marked in WAKE) and hand them their part."""
    for worker in workers:
        if worker.flags[WAKE]:
            worker.post(NATIVE)


def _lost() -> RuntimeError:
    return RuntimeError("threads: a worker of lgc's pool never finished its part")


def launch_program(program: np.ndarray, count: int) -> int:
    """The prepared calls of `program` (int64 rows: trampoline address, block address,
    threads, and the cycles each call took, written here), one after another in compiled
    code: each call's parts on its threads (at most `count`), the caller taking part 0, the
    next call posted as soon as every part of the last is done. Python steps in only to wake
    a sleeping worker (that call's time is then left at 0). Returns the number of calls run:
    all of them, or the index of the one that raised (those after it not run)."""
    n = len(program)
    i = 0
    with _LOCK:
        workers = _workers(count)
        while i < n:
            r = _pool(0, RUN, i, a=WAIT_SPINS, b=PATIENCE, program=program)
            i, why = divmod(r, 4)
            if why == ASLEEP_AT:  # posted: wake the sleepers, finish it here, go on
                fn, block, parts = (int(v) for v in program[i, :3])
                _wake(workers[:parts - 1])
                program[i, 3] = 0
                status = _pool(0, FINISH, fn, block, parts, WAIT_SPINS, PATIENCE)
                why = LOST_AT if status < 0 else FAILED_AT if status else RAN
                i += why == RAN
            if why == LOST_AT:
                raise _lost()
            if why == FAILED_AT:
                return i
    return n
