"""The `--cluster` switch: where a dataset job runs and how its actors are sized. Ray-free, so that every verb's
``--help`` and option parsing work without the optional extra; `require_ray` says how to install it.

``--cluster WHERE[,actors=N][,cpus=C][,gpus=G][,batch=B]``

- ``WHERE``: ``local`` (a private Ray on this machine, bound to 127.0.0.1, gone when the job ends), ``auto`` (the
  cluster this machine belongs to: ``$RAY_ADDRESS``, or the one ``ray start`` started here) or an address
  (``HOST:PORT`` of a head node, ``ray://HOST:10001`` for Ray Client).
- ``actors``: how many model copies work at once (default: as many as the cluster's CPUs, or GPUs, allow, grown as
  work queues up); ``cpus`` / ``gpus``: what each actor reserves (default 1 CPU, no GPU; ``gpus=1`` puts every
  actor on a GPU of its own, ``gpus=0.5`` two on one); ``batch``: images per task (default 4), the unit that is
  retried when an actor dies.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from types import ModuleType

from p3m.errors import P3MError

__all__ = ["INSTALL_HINT", "ClusterSpec", "add_cluster_option", "parse_cluster_spec", "require_ray"]

INSTALL_HINT = "--cluster needs Ray, an optional part of p3m: pip install 'p3m[cluster]'"


@dataclass(frozen=True)
class ClusterSpec:
    """Where a job runs (``address``: "local", "auto" or a Ray address) and what each actor reserves."""

    address: str = "local"
    actors: int | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    batch: int = 4

    def __post_init__(self) -> None:
        if not self.address:
            raise P3MError("--cluster needs a place: local, auto or a Ray address (HOST:PORT)")
        if self.actors is not None and self.actors < 1:
            raise P3MError(f"--cluster actors must be at least 1, got {self.actors}")
        if self.cpus <= 0 and self.gpus <= 0:
            raise P3MError("--cluster: each actor needs some cpus or gpus")
        if self.cpus < 0 or self.gpus < 0:
            raise P3MError("--cluster cpus and gpus cannot be negative")
        if self.batch < 1:
            raise P3MError(f"--cluster batch must be at least 1, got {self.batch}")


_NUMBERS = {"actors": int, "cpus": float, "gpus": float, "batch": int}


def parse_cluster_spec(text: str) -> ClusterSpec:
    """``"auto,actors=4,gpus=1"`` -> ClusterSpec; a one-line P3MError (argparse shows it) for anything else."""
    where, *pairs = (part.strip() for part in text.split(","))
    values: dict[str, int | float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in _NUMBERS:
            raise P3MError(f"--cluster: unknown setting {pair!r}; use actors=N, cpus=C, gpus=G or batch=B")
        try:
            values[key] = _NUMBERS[key](value)
        except ValueError:
            raise P3MError(f"--cluster: {key} must be a number, got {value!r}") from None
    return ClusterSpec(where, **values)  # type: ignore[arg-type]


def _argument(text: str) -> ClusterSpec:
    try:
        return parse_cluster_spec(text)
    except P3MError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cluster_option(parser: argparse.ArgumentParser) -> None:
    """The one switch a dataset verb gets: ``--cluster WHERE[,actors=N,cpus=C,gpus=G,batch=B]``."""
    parser.add_argument(
        "--cluster",
        type=_argument,
        default=None,
        metavar="WHERE[,actors=N,cpus=C,gpus=G]",
        help="run on a Ray cluster (pip install 'p3m[cluster]'): local (a private one on this machine), auto "
        "(the cluster this machine joined) or a head's HOST:PORT; same outputs, rules and report as without it "
        "(docs/cluster.md)",
    )


def require_ray() -> ModuleType:
    """The `ray` module, or a one-line P3MError saying how to install it."""
    try:
        import ray
        import ray.data  # the Data library (`ray[data]`): its absence is the extra's absence too
    except ImportError:
        raise P3MError(INSTALL_HINT) from None
    return ray
