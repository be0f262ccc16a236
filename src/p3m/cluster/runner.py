"""`RayRunner`: a `p3m.workers.Runner` on Ray Data, an actor pool that builds each worker (loads the model) once.

The job's items are planned on the driver (the verb's own planning: names, clashes, skip/overwrite) and shipped
to the object store in shards of `SHARD` items, sorted by key; each actor fetches a shard when it first needs it,
so no process holds the whole plan but the driver. The dataset is either the items' files, read by Ray Data from
wherever they are (`ray.data.read_binary_files`: local folders, object storage; the actor gets the bytes), or
just the items' keys (workers that read their own files, e.g. evaluation). ``map_batches`` runs the worker's
per-item function in actors of ``spec.cpus`` CPUs / ``spec.gpus`` GPUs; outcomes stream back to the driver in
completion order.

Nothing lost: an actor that dies (killed, out of memory, its machine gone) is restarted and its unfinished tasks
(``spec.batch`` items each) run again, up to `TASK_RETRIES` times; an exception a worker did not turn into an
outcome itself becomes that item's error outcome (`WorkerFactory.failed`), never a failed job; an item whose task
failed for good (a file Ray could not read, a worker that died on it every time) gets an error outcome too, after
the rest of the job has finished.
"""

from __future__ import annotations

import bisect
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from p3m.cluster.sources import RemoteFile, filesystem_of
from p3m.cluster.spec import ClusterSpec, require_ray
from p3m.workers import FailedOutcome, WorkerFactory

__all__ = ["SHARD", "TASK_RETRIES", "RayRunner", "connected"]

#: Items per shard of the plan in the object store (an actor holds a few shards at a time).
SHARD = 1024
#: How often a task is run again after its actor died (then its items are reported as failed).
TASK_RETRIES = 3


@contextmanager
def connected(spec: ClusterSpec) -> Iterator[Any]:
    """Ray, connected as ``spec.address`` says (a session already open in this process is used as it is).

    ``local`` starts a private Ray on this machine (its node known as 127.0.0.1; Ray's token authentication, its
    default, guards its ports), without dashboard and usage statistics, and stops it afterwards; ``auto`` / an
    address join a running cluster (nothing of it is started or stopped here).
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry (p3m's rule; a cluster started with
    # `ray start --disable-usage-stats` follows its own setting)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if spec.address == "local":
        kwargs.update(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        kwargs["address"] = spec.address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        from p3m.errors import P3MError

        raise P3MError(f"--cluster {spec.address}: cannot connect to a Ray cluster ({exc})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _quiet_ray_data(ray: Any) -> None:
    """The driver shows p3m's own progress line; Ray Data's bars and notes are left out (its errors are not), and
    failed blocks are tolerated (their items are reported per item instead, see the module docstring)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.max_errored_blocks = -1
    logging.getLogger("ray.data").setLevel(logging.ERROR)


class _Plan:
    """The items in shards by sorted key: ``lookup(key) -> (index, item)``, fetching a shard when first needed."""

    def __init__(self, shard_refs: list[Any], bounds: list[str]) -> None:
        self.refs, self.bounds = shard_refs, bounds
        self.cache: dict[int, dict[str, tuple[int, Any]]] = {}

    def lookup(self, key: str) -> tuple[int, Any]:
        import ray

        shard = bisect.bisect_right(self.bounds, key) - 1
        if shard not in self.cache:
            if len(self.cache) >= 4:
                self.cache.pop(next(iter(self.cache)))
            self.cache[shard] = ray.get(self.refs[shard])
        return self.cache[shard][key]


class _Actor:
    """One actor of the pool: the worker built once, then one call per batch of rows (``key`` or ``path`` [+
    ``bytes``]) -> ``index`` and the pickled ``outcome`` of each row."""

    def __init__(self, make_worker: WorkerFactory, shard_refs: list[Any], bounds: list[str]) -> None:
        self.make_worker = make_worker
        self.work = make_worker()
        self.plan = _Plan(shard_refs, bounds)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = batch["path"] if "path" in batch else batch["key"]
        datas = batch["bytes"] if "bytes" in batch else [None] * len(keys)
        indices, outcomes = [], []
        for key, data in zip(keys, datas, strict=True):
            index, item = self.plan.lookup(str(key))
            try:
                outcome = self.work(item, None if data is None else bytes(data))
            except Exception as exc:  # a bug in the worker: this item's error, not a failed job
                message = f"internal error: {type(exc).__name__}: {exc}"
                outcome = self.make_worker.failed(item, message)  # type: ignore[attr-defined]
            indices.append(index)
            outcomes.append(pickle.dumps(outcome))
        return {"index": np.asarray(indices, dtype=np.int64), "outcome": np.asarray(outcomes, dtype=object)}


def _source_key(source: Any) -> str:
    """The path Ray reads a source under and reports back: a remote file's own, a local file made absolute."""
    return str(source) if isinstance(source, RemoteFile) else os.path.abspath(os.fspath(source))


class RayRunner:
    """A `p3m.workers.Runner` on a Ray cluster (`ClusterSpec`).

    ``source(item)``: the item's input file, which Ray Data then reads for the worker (any file system it reads);
    None: the workers read their items' files themselves (paths every machine sees). ``progress``: a progress
    line on stderr (items done / total, rate, time left) labelled ``label``, for callers without one of their own.
    """

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        source: Callable[[Any], Path] | None = None,
        label: str = "p3m",
        progress: bool = False,
    ) -> None:
        self.spec, self.source, self.label, self.progress = spec, source, label, progress

    def __call__(self, make_worker: WorkerFactory, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if not items:
            return
        if not isinstance(make_worker, FailedOutcome):
            raise TypeError(f"{make_worker!r} has no failed(item, message): a cluster reports lost items with it")
        from tqdm import tqdm

        with (
            connected(self.spec) as ray,
            tqdm(total=len(items), desc=self.label, unit="img", disable=not self.progress, file=sys.stderr) as bar,
        ):
            _quiet_ray_data(ray)
            done: set[int] = set()
            for index, outcome in self._stream(ray, make_worker, items):
                if index not in done:  # a task retried after its actor died may bring an item twice
                    done.add(index)
                    bar.update(1)
                    yield index, outcome
            for index in range(len(items)):  # items of tasks that failed for good: reported, never dropped
                if index not in done:
                    yield index, make_worker.failed(items[index], self._lost_reason())

    def _lost_reason(self) -> str:
        what = "its file could not be read, or " if self.source is not None else ""
        return (
            f"not processed: {what}the actor working on it died {TASK_RETRIES + 1} times "
            "(out of memory? see the Ray logs); run again to retry it"
        )

    def _stream(self, ray: Any, make_worker: WorkerFactory, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if self.source is not None:
            sources = [self.source(item) for item in items]
            keys = [_source_key(s) for s in sources]
            filesystem = filesystem_of(sources)
        else:
            keys = [f"{i:012d}" for i in range(len(items))]
        order = sorted(range(len(items)), key=keys.__getitem__)
        shards = [order[i : i + SHARD] for i in range(0, len(order), SHARD)]
        refs = [ray.put({keys[i]: (i, items[i]) for i in shard}) for shard in shards]
        bounds = [keys[shard[0]] for shard in shards]
        blocks = max(1, -(-len(items) // self.spec.batch))
        sorted_keys = [keys[i] for i in order]
        smallest, largest = self._pool_size(ray)
        pool = ray.data.ActorPoolStrategy(min_size=smallest, max_size=largest)
        if self.source is not None:
            dataset = ray.data.read_binary_files(
                sorted_keys,
                include_paths=True,
                filesystem=filesystem,
                override_num_blocks=blocks,
                ignore_missing_paths=True,  # a file gone since the listing: its item is reported, the job goes on
                num_cpus=0,  # reading waits on I/O: it must never wait for a CPU an actor holds,
                concurrency=largest,  # but as many reads at once as actors, not a process per block
            )
        else:
            dataset = ray.data.from_items([{"key": k} for k in sorted_keys], override_num_blocks=blocks)
        with warnings.catch_warnings():  # bounded retries are still given as remote arguments in Ray 2.60-2.63
            warnings.simplefilter("ignore", DeprecationWarning)
            outcomes = self._map(dataset, pool, make_worker, refs, bounds)
        for batch in outcomes.iter_batches(batch_size=None, batch_format="numpy"):
            for index, blob in zip(batch["index"], batch["outcome"], strict=True):
                yield int(index), pickle.loads(blob)

    def _map(self, dataset: Any, pool: Any, make_worker: WorkerFactory, refs: list[Any], bounds: list[str]) -> Any:
        return dataset.map_batches(
            _Actor,
            fn_constructor_args=(make_worker, refs, bounds),
            batch_size=None,  # one task = one block of `batch` items: the unit retried after an actor died
            batch_format="numpy",
            compute=pool,
            num_cpus=self.spec.cpus,
            num_gpus=self.spec.gpus,
            max_restarts=-1,
            max_task_retries=TASK_RETRIES,
        )

    def _pool_size(self, ray: Any) -> tuple[int, int]:
        """``spec.actors`` actors, else a pool grown from 1 to what the cluster's CPUs (GPUs for GPU actors) hold."""
        if self.spec.actors is not None:
            return self.spec.actors, self.spec.actors
        resources = ray.cluster_resources()
        fits = [resources.get("CPU", 1) / self.spec.cpus] if self.spec.cpus else []
        fits += [resources.get("GPU", 0) / self.spec.gpus] if self.spec.gpus else []
        return 1, max(1, int(min(fits)))
