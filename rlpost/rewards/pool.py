"""Grading in worker processes with a per-item deadline: a hung or crashing grader costs one item, never the run.

Each worker is a process that imports one grading function (`package.module:function`) and answers
`function(*args)` for one item at a time over a pipe. The parent keeps every worker busy and waits on all pipes
with a deadline; a worker past its deadline is killed (SIGKILL: also stops C loops that ignore signals, e.g. a
sympy big-integer power) and replaced, a worker that dies is replaced, and in both cases the item scores the
default and is counted. No signal or timer is used in the parent, so nothing here fights a library's own
SIGALRM timeout (math-verify's), and the graders run in parallel.

Workers are forked from a `forkserver` that has preloaded the grading module: a replacement starts in
milliseconds, and the workers never inherit the trainer's threads or CUDA state.
"""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

_STOP = None


def _import(dotted: str):
    module_name, _, attribute = dotted.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _serve(dotted: str, warm_up: tuple, connection: Connection) -> None:
    """Worker loop: import and warm up, say ready, then answer (index, args) with (index, ok, value or traceback)."""
    try:
        function = _import(dotted)
        if warm_up:
            function(*warm_up)
    except Exception:
        connection.send(("failed", traceback.format_exc(limit=3)))
        return
    connection.send(("ready", ""))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if message is _STOP:
            return
        index, args = message
        try:
            reply = (index, True, function(*args))
        except Exception:  # one bad item must not end the worker
            reply = (index, False, traceback.format_exc(limit=3))
        connection.send(reply)


@dataclass
class PoolCounts:
    """What happened to the items of one `map` call."""

    items: int = 0
    errors: int = 0  # the grading function raised
    timeouts: int = 0  # killed at the deadline
    crashes: int = 0  # the worker process died
    seconds: float = 0.0
    first_failure: str = ""

    @property
    def failures(self) -> int:
        return self.errors + self.timeouts + self.crashes


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection
    item: int = -1  # index in flight, -1 when idle
    deadline: float = 0.0
    ready: bool = False  # imported the grading function (start-up time is not charged to an item)


@dataclass
class GraderPool:
    """`workers` processes running `function` (dotted path); `map` grades a batch with a per-item timeout."""

    function: str
    workers: int = 2
    timeout_s: float = 5.0  # per item; 0 = no deadline
    warm_up: tuple = ()  # arguments of one call made before the worker reports ready (not charged to an item)
    preload: tuple[str, ...] = ()  # modules the forkserver imports once, so replacements start fast
    _pool: list[_Worker] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([*self.preload, self.function.partition(":")[0]])
        self._context = context
        self._pool = [self._start() for _ in range(self.workers)]
        atexit.register(self.close)

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(self.function, self.warm_up, child_end), daemon=True)
        process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def _replace(self, worker: _Worker) -> _Worker:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.connection.close()
        return self._start()

    def _started(self, worker: _Worker) -> _Worker:
        """Read a starting worker's first message; a worker that cannot import the grader stops the run."""
        try:
            status, detail = worker.connection.recv()
        except (EOFError, OSError):
            status, detail = "failed", f"exited with code {worker.process.exitcode} while starting"
        if status != "ready":
            self.close()
            raise RuntimeError(f"grading worker for {self.function} could not start: {detail}")
        worker.ready = True
        return worker

    def map(self, items: Sequence[tuple], default=0.0) -> tuple[list, PoolCounts]:
        """[function(*item) or `default` on error/timeout/crash] in item order, and the counts."""
        started = time.perf_counter()
        results = [default] * len(items)
        counts = PoolCounts(items=len(items))
        queue = deque(range(len(items)))

        def fail(kind: str, index: int, detail: str) -> None:
            setattr(counts, kind, getattr(counts, kind) + 1)
            counts.first_failure = counts.first_failure or f"item {index}: {detail}"

        while queue or any(w.item >= 0 for w in self._pool):
            for slot, worker in enumerate(self._pool):
                if worker.ready and worker.item < 0 and queue:
                    index = queue.popleft()
                    try:
                        worker.connection.send((index, items[index]))
                    except (BrokenPipeError, OSError):  # died while idle: replace it and retry the item
                        self._pool[slot] = self._replace(worker)
                        queue.appendleft(index)
                        continue
                    worker.item = index
                    worker.deadline = time.monotonic() + self.timeout_s if self.timeout_s > 0 else float("inf")
            watched = [w for w in self._pool if w.item >= 0 or not w.ready]
            deadlines = [w.deadline for w in watched if w.item >= 0]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else float("inf")
            ready = wait([w.connection for w in watched], timeout=None if wait_s == float("inf") else wait_s)
            for slot, worker in enumerate(self._pool):
                if not worker.ready:
                    if worker.connection in ready:
                        self._pool[slot] = self._started(worker)
                    continue
                if worker.item < 0:
                    continue
                index = worker.item
                if worker.connection in ready:
                    try:
                        _, ok, value = worker.connection.recv()
                    except (EOFError, OSError):
                        worker.process.join(timeout=5)
                        fail("crashes", index, f"worker exited with code {worker.process.exitcode}")
                        self._pool[slot] = self._replace(worker)
                        continue
                    worker.item = -1
                    if ok:
                        results[index] = value
                    else:
                        fail("errors", index, value)
                elif time.monotonic() >= worker.deadline:
                    fail("timeouts", index, f"timed out after {self.timeout_s}s")
                    self._pool[slot] = self._replace(worker)
        counts.seconds = time.perf_counter() - started
        return results, counts

    def close(self) -> None:
        for worker in self._pool:
            try:
                worker.connection.send(_STOP)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._pool:
            worker.process.join(timeout=1)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1)
            worker.connection.close()
        self._pool = []


_POOLS: dict[tuple, GraderPool] = {}


def shared_pool(function: str, workers: int, timeout_s: float, warm_up: tuple = (), preload=()) -> GraderPool:
    """One long-lived pool per (function, workers, timeout) in this process (workers start once per run)."""
    key = (function, workers, timeout_s)
    if key not in _POOLS:
        _POOLS[key] = GraderPool(function, workers, timeout_s, tuple(warm_up), tuple(preload))
    return _POOLS[key]
