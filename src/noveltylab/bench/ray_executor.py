"""Run benchmark tasks as Ray tasks: a local Ray runtime by default, a cluster with ``address``.

Each (setting, class, seed) is one Ray task asking for ``threads`` CPUs (and
``gpus_per_task`` GPUs), so Ray never runs more tasks at once than the cores
(or GPUs) allow and each task's torch/FAISS use exactly its share. Tasks are
collected as they finish (``ray.wait``) and handed to the engine, which writes
each one's part file at once. A task that raises is retried by Ray
(``retries`` times, application errors included), then reported as failed;
the other tasks are unaffected. Workers load the data themselves from
``data_dir`` (on a cluster: a path every node can read), so only the small
task description travels.

Ray is an optional dependency: ``pip install -e ".[ray]"``.
"""
from __future__ import annotations

import os
import traceback
from typing import Any, Sequence

from .engine import Job, OnDone, OnFail, run_task


def ray_available() -> bool:
    """Whether Ray can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _remote_task(job: Job, data_dir: str | None, threads: int, device: str | None, command: str) -> dict[str, Any]:
    # Ray sets OMP_NUM_THREADS to the task's CPUs; torch/FAISS are set explicitly as well
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    return run_task(job, data_dir, threads, device, None, command)


class RayExecutor:
    """Executor over a Ray runtime (started here unless ``address`` names a running cluster)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, threads: int = 1,
                 gpus_per_task: float = 0.0, retries: int = 1, device: str | None = None) -> None:
        if not ray_available():
            raise RuntimeError("Ray is not installed: pip install -e \".[ray]\" (or run with --executor sequential)")
        if threads < 1:
            raise ValueError(f"threads per task must be >= 1, got {threads}")
        if gpus_per_task < 0:
            raise ValueError(f"gpus per task must be >= 0, got {gpus_per_task}")
        self.address, self.threads, self.gpus, self.retries = address, threads, gpus_per_task, retries
        self.num_cpus = num_cpus if num_cpus is not None else (None if address else os.cpu_count() or 1)
        self.device = device or ("cuda" if gpus_per_task > 0 else None)

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:  # a small local runtime: tasks move only a few kB, so a small object store is enough
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False,
                     object_store_memory=256 * 2 ** 20, configure_logging=False)

    def run(self, jobs: Sequence[Job], data_dir: str | None, command: str, on_done: OnDone, on_fail: OnFail) -> None:
        import ray

        self._init()
        remote = ray.remote(_remote_task).options(num_cpus=self.threads, num_gpus=self.gpus,
                                                  max_retries=self.retries, retry_exceptions=True)
        pending = {remote.remote(job, data_dir, self.threads, self.device, command): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    part = ray.get(ref)
                except Exception:  # noqa: BLE001  (Ray re-raises the task's error after its retries)
                    on_fail(job, traceback.format_exc())
                    continue
                on_done(job, part)

    def shutdown(self) -> None:
        """Stop the local runtime this executor started (a cluster is left running)."""
        import ray

        if ray.is_initialized() and not self.address:
            ray.shutdown()
