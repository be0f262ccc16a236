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

The function gets each item and, where the runner read the item's file for it (a cluster reads inputs from any
file system Ray reads, object storage included), the file's bytes; ``None`` means "read it yourself".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["FailedOutcome", "ItemFunction", "Runner", "WorkerFactory", "run_here"]

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
