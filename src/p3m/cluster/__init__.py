"""Dataset jobs on a Ray cluster: ``p3m matte``, ``anonymize`` and ``evaluate`` with ``--cluster`` (docs/cluster.md).

One switch on the existing verbs rather than new verbs: a cluster run plans exactly as the verb does on one
machine (inputs, output names, skip/overwrite rules, the report) and runs the same per-item function
(`p3m.infer.batch.matte_job`, `p3m.privacy.anonymize.anonymize_task`, the evaluator's scorer); only the runner
(`p3m.workers`) differs. So the outputs are the same bytes, and a user learns nothing new but where it runs.

- `spec`: the ``--cluster`` switch (`ClusterSpec`; Ray-free, so ``--help`` works without the extra).
- `sources`: inputs on any file system pyarrow or fsspec knows (object storage), listed for planning.
- `runner`: `RayRunner`, the Ray Data actor pool (needs ``pip install 'p3m[cluster]'``).
"""

from p3m.cluster.spec import INSTALL_HINT, ClusterSpec, add_cluster_option, parse_cluster_spec, require_ray

__all__ = ["INSTALL_HINT", "ClusterSpec", "add_cluster_option", "parse_cluster_spec", "require_ray"]
