"""Running one per-item function over many items: here, in this process, or on a Ray cluster (`p3m.cluster`).

A batch job (matte a folder, anonymise a dataset, score predictions) is a list of items and one function that does
the whole work of one item and reports its outcome instead of raising. The function often needs state that is
costly to build (a loaded model, a face detector), so jobs describe it by a *worker factory*: a picklable
object, called with no arguments once per worker process, that returns the per-item function; its ``failed(item,
message)`` gives the outcome of an item that could not be run at all (its worker died on it again and again, its
file could not be fetched), so that such an item is reported like any other failure. A *runner* takes
the factory and the items and yields ``(index, outcome)`` pairs as items finish (in any order); `run_here` is the
one-process runner, `p3m.cluster.ray_runner` the cluster one. The per-item function is the same in both, so a
cluster run writes exactly what a run on one machine writes.

`run_stages` is the one-process runner for work that splits into stages (decode, compute, encode and write): each
stage runs on its own thread, so on a machine with a few cores one image's output is encoded while the next one is
computed and the one after is decoded; a stage that is the bottleneck and whose work releases the GIL (numba
``nogil`` kernels, OpenCV, PyTorch, ONNX Runtime) may run on several threads at once, its results still handed on
in the items' order. `usable_cpus` is how many CPUs this process may run on, the base of such thread counts.

The function gets each item and, where the runner read the item's file for it (a cluster reads inputs from any
file system Ray reads, object storage included), the file's bytes; ``None`` means "read it yourself".
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["FailedOutcome", "ItemFunction", "Runner", "WorkerFactory", "run_here", "run_stages", "usable_cpus"]

#: ``fn(item, data)``: the whole work of one item (``data``: the item's file, when the runner read it) -> outcome.
ItemFunction = Callable[[Any, "bytes | None"], Any]


#: Builds the per-item function once per worker (loads the model). For runners in other processes it is picklable
#: and also has ``failed(item, message) -> outcome`` (`FailedOutcome`).
WorkerFactory = Callable[[], ItemFunction]


@runtime_checkable
class FailedOutcome(Protocol):
    """What a worker factory for other processes also has: the outcome of an item that could not be run."""

    def failed(self, item: Any, message: str) -> Any: ...


class Runner(Protocol):
    """Maps a worker's per-item function over items; yields ``(index into items, outcome)`` as each finishes."""

    def __call__(self, make_worker: WorkerFactory, items: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...


def run_here(make_worker: WorkerFactory, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
    """The one-process runner: build the worker once, then each item in order (lazily)."""
    if not items:
        return
    work = make_worker()
    for index, item in enumerate(items):
        yield index, work(item, None)


def usable_cpus() -> int:
    """How many CPUs this process may run on: its affinity mask (a container's or ``taskset``'s limit), where the
    system reports one, else the machine's count; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this system (macOS, Windows)
        return max(1, os.cpu_count() or 1)


_DONE = object()  # the end of a stage's input


class _StageError:
    """An exception a stage raised (a bug: stages report failures as outcomes), carried to the caller's thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(box: queue.Queue, value: Any, stop: threading.Event) -> bool:
    """Put ``value`` into ``box``, waiting while it is full, unless the run stops -> whether it was put."""
    while not stop.is_set():
        try:
            box.put(value, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(box: queue.Queue, stop: threading.Event) -> Any:
    """The next value of ``box``, or _DONE once the run stops."""
    while not stop.is_set():
        try:
            return box.get(timeout=0.1)
        except queue.Empty:
            continue
    return _DONE


class _InOrder:
    """Hands a stage's results on in the items' order when several threads run the stage: a thread with a later
    item waits until every earlier item has been handed on (each item passes every stage, its index in turn)."""

    def __init__(self) -> None:
        self.next = 0
        self.turn = threading.Condition()

    def put(self, outbox: queue.Queue, index: int, value: Any, stop: threading.Event) -> bool:
        with self.turn:
            while self.next != index:
                if stop.is_set():
                    return False
                self.turn.wait(0.1)
        put = _put(outbox, (index, value), stop)  # outside the lock: a full outbox must not block the others' turn
        with self.turn:
            self.next += 1
            self.turn.notify_all()
        return put


class _Finish:
    """The end of a stage run by several threads: the last of them to see the end of the input passes it on."""

    def __init__(self, threads: int) -> None:
        self.left = threads
        self.lock = threading.Lock()

    def last(self) -> bool:
        with self.lock:
            self.left -= 1
            return self.left == 0


def _stage_loop(
    fn: Callable[[Any], Any],
    inbox: queue.Queue,
    outbox: queue.Queue,
    stop: threading.Event,
    order: _InOrder,
    finish: _Finish,
) -> None:
    while (got := _get(inbox, stop)) is not _DONE:
        index, value = got
        if not isinstance(value, _StageError):
            try:
                value = fn(value)
            except BaseException as exc:  # handed to the caller, who re-raises it
                value = _StageError(exc)
        if not order.put(outbox, index, value, stop):
            return
    if stop.is_set():
        return
    _put(inbox, _DONE, stop)  # for this stage's other threads
    if finish.last():
        _put(outbox, _DONE, stop)


def run_stages(
    stages: Sequence[Callable[[Any], Any]],
    items: Sequence[Any],
    *,
    depth: int = 1,
    threads: Sequence[int] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Each item through ``stages`` in turn (the first stage gets the item, each next one what the previous
    returned), every stage on its own thread, so that different items are in different stages at once; yields
    ``(index, what the last stage returned)`` in the items' order.

    ``threads``: how many threads run each stage (default one each); a stage on several works on as many items at
    once and hands them on in order, so each stage sees the items in order and the results are the same. Only
    worth it for a stage whose work releases the GIL. ``depth``: how many finished items may wait between two
    stages (memory stays bounded: at most about ``sum(threads) + len(stages) * depth`` items are held at once).
    Stages report an item's failure in what they return; an exception a stage raises anyway stops the run and is
    raised here. Closing the iterator early (an interrupt) stops the stages after the items they are on.
    """
    counts = [1] * len(stages) if threads is None else list(threads)
    if len(counts) != len(stages) or min(counts, default=1) < 1:
        raise ValueError(f"threads: one count >= 1 per stage, got {counts} for {len(stages)} stages")
    if not items:
        return
    stop = threading.Event()
    boxes: list[queue.Queue] = [queue.Queue(maxsize=depth) for _ in range(len(stages) + 1)]
    workers = []
    for i, (fn, count) in enumerate(zip(stages, counts, strict=True)):
        order, finish = _InOrder(), _Finish(count)
        workers += [
            threading.Thread(
                target=_stage_loop,
                args=(fn, boxes[i], boxes[i + 1], stop, order, finish),
                daemon=True,
                name=f"stage-{i}" + (f"-{k}" if count > 1 else ""),
            )
            for k in range(count)
        ]
    for thread in workers:
        thread.start()

    def feed() -> None:
        for index, item in enumerate(items):
            if not _put(boxes[0], (index, item), stop):
                return
        _put(boxes[0], _DONE, stop)

    feeder = threading.Thread(target=feed, daemon=True, name="stage-feed")
    feeder.start()
    try:
        while (got := boxes[-1].get()) is not _DONE:
            index, value = got
            if isinstance(value, _StageError):
                raise value.exc
            yield index, value
    finally:
        stop.set()  # every thread ends within 0.1 s once the item in its hands is done
