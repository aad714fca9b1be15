"""One adapter per system: start it, map a task over kwargs dicts, run one task, stop it.

Every adapter runs the same task functions (bench/add_task.py) with the same
number of workers, in the way the system's own documentation recommends for
a map over many small tasks. Only the adapter's ``start`` differs between a
cold and a warm run: a cold run times ``start`` and the map, a warm run reuses
what ``start`` made (the pool, the cluster), as a user who runs many maps
would.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Callable

import add_task

WORKERS = os.cpu_count() or 2

# kind -> (function for f(**kw), wrapper taking one dict)
TASKS: dict[str, tuple[Callable[..., Any], Callable[[dict[str, Any]], Any]]] = {
    "add": (add_task.add, add_task.call_with_kwargs),
    "raise": (add_task.add_or_raise, add_task.call_add_or_raise),
    "echo": (add_task.echo, add_task.call_echo),
    "sleep": (add_task.sleep_10ms, add_task.call_sleep_10ms),
}


class System:
    """A system under test; subclasses fill in start/map/one/close."""

    name = ""
    label = ""

    def start(self) -> None:
        """Creates the pool / cluster (timed in a cold run)."""

    def map(self, kind: str, params: list[dict[str, Any]]) -> list[Any]:
        """Runs TASKS[kind] over params, results in order (exceptions as values or None)."""
        raise NotImplementedError

    def one(self, kind: str, kwargs: dict[str, Any]) -> Any:
        """Runs one task as its own job/request and returns its value."""
        return self.map(kind, [kwargs])[0]

    def after_run(self) -> None:
        """Untimed clean-up after each run (mapdeploy: delete the job folders)."""

    def close(self) -> None:
        """Stops what start made."""


class MapDeploy(System):
    name = "mapdeploy"
    label = "mapdeploy"

    def __init__(self) -> None:
        import mapdeploy
        from mapdeploy import _engine
        self._gl = mapdeploy
        self._jobs_dir = _engine.jobs_dir()
        self._env = mapdeploy.deploy.environment.LocalAsync("bench", num_workers=WORKERS)

    def map(self, kind: str, params: list[dict[str, Any]]) -> list[Any]:
        job = self._gl.deploy.map_job.create(TASKS[kind][0], params, environment=self._env)
        if kind == "raise":
            return job.get_map_results()
        return job.get_results()

    def metrics(self, kind: str, params: list[dict[str, Any]]) -> Any:
        """Case 4: the results and the full metrics table."""
        job = self._gl.deploy.map_job.create(TASKS[kind][0], params, environment=self._env)
        results = job.get_results()
        return results, job.get_metrics()

    def one(self, kind: str, kwargs: dict[str, Any]) -> Any:
        return self.map(kind, [kwargs])[0]

    def after_run(self) -> None:
        if os.path.isdir(self._jobs_dir):
            for entry in os.listdir(self._jobs_dir):
                shutil.rmtree(os.path.join(self._jobs_dir, entry), ignore_errors=True)

    def close(self) -> None:
        # The warm pool this process left would serve the next measuring
        # process too, making its "cold" run warm; like every peer's pool,
        # ours ends with the process that measured it.
        self._gl.deploy.stop_idle_workers()


class PoolSystem(System):
    def __init__(self, method: str) -> None:
        import multiprocessing
        self._ctx = multiprocessing.get_context(method)
        self._pool: Any = None
        self.name = f"pool_{method}"
        self.label = f"Pool({method}).map"

    def start(self) -> None:
        self._pool = self._ctx.Pool(WORKERS)

    def map(self, kind: str, params: list[dict[str, Any]]) -> list[Any]:
        return self._pool.map(TASKS[kind][1], params)

    def one(self, kind: str, kwargs: dict[str, Any]) -> Any:
        return self._pool.apply(TASKS[kind][0], (), kwargs)

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


class ExecutorSubmit(System):
    name = "ppe_submit"
    label = "ProcessPool submit"

    def start(self) -> None:
        from concurrent.futures import ProcessPoolExecutor
        self._ex = ProcessPoolExecutor(WORKERS)

    def map(self, kind: str, params: list[dict[str, Any]]) -> list[Any]:
        futures = [self._ex.submit(TASKS[kind][0], **kw) for kw in params]
        return [f.result() if f.exception() is None else f.exception() for f in futures]

    def one(self, kind: str, kwargs: dict[str, Any]) -> Any:
        return self._ex.submit(TASKS[kind][0], **kwargs).result()

    def close(self) -> None:
        self._ex.shutdown()


class ExecutorMap(ExecutorSubmit):
    name = "ppe_map"
    label = "ProcessPool map(chunks)"

    def map(self, kind: str, params: list[dict[str, Any]]) -> list[Any]:
        chunksize = max(1, len(params) // (WORKERS * 4))
        return list(self._ex.map(TASKS[kind][1], params, chunksize=chunksize))


class Joblib(System):
    name = "joblib"
    label = "joblib (loky)"

    def start(self) -> None:
        import joblib
        self._joblib = joblib
        # loky keeps its executor between Parallel calls: a warm run reuses it.
        self._joblib.Parallel(n_jobs=WORKERS)(self._joblib.delayed(add_task.add)(x=1, y=1)
                                              for _ in range(WORKERS))

    def map(self, kind: str, params: list[dict[str, Any]]) -> list[Any]:
        # joblib stops at the first exception: failures are returned as values
        function = TASKS[kind][1] if kind == "raise" else TASKS[kind][0]
        delayed = self._joblib.delayed(function)
        if kind == "raise":
            return self._joblib.Parallel(n_jobs=WORKERS)(delayed(kw) for kw in params)
        return self._joblib.Parallel(n_jobs=WORKERS)(delayed(**kw) for kw in params)


class Dask(System):
    name = "dask"
    label = "Dask LocalCluster"

    def start(self) -> None:
        from dask.distributed import Client, LocalCluster
        self._cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                     dashboard_address=None)
        self._client = Client(self._cluster)

    def map(self, kind: str, params: list[dict[str, Any]]) -> list[Any]:
        futures = self._client.map(TASKS[kind][1], params, pure=False)
        return self._client.gather(futures)

    def one(self, kind: str, kwargs: dict[str, Any]) -> Any:
        return self._client.submit(TASKS[kind][0], pure=False, **kwargs).result()

    def close(self) -> None:
        self._client.close()
        self._cluster.close()


class Ray(System):
    name = "ray"
    label = "Ray"

    def start(self) -> None:
        import ray
        self._ray = ray
        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        self._remote = {kind: ray.remote(functions[0]) for kind, functions in TASKS.items()}
        self._remote_catch = ray.remote(add_task.call_add_or_raise)

    def map(self, kind: str, params: list[dict[str, Any]]) -> list[Any]:
        if kind == "raise":
            return self._ray.get([self._remote_catch.remote(kw) for kw in params])
        remote = self._remote[kind]
        return self._ray.get([remote.remote(**kw) for kw in params])

    def one(self, kind: str, kwargs: dict[str, Any]) -> Any:
        return self._ray.get(self._remote[kind].remote(**kwargs))

    def close(self) -> None:
        self._ray.shutdown()


FACTORIES: dict[str, Callable[[], System]] = {
    "mapdeploy": MapDeploy,
    "pool_fork": lambda: PoolSystem("fork"),
    "pool_spawn": lambda: PoolSystem("spawn"),
    "ppe_submit": ExecutorSubmit,
    "ppe_map": ExecutorMap,
    "joblib": Joblib,
    "dask": Dask,
    "ray": Ray,
}

LABELS = {"mapdeploy": "mapdeploy", "pool_fork": "Pool(fork).map",
          "pool_spawn": "Pool(spawn).map", "ppe_submit": "ProcessPoolExecutor submit",
          "ppe_map": "ProcessPoolExecutor map(chunksize)", "joblib": "joblib (loky)",
          "dask": "Dask LocalCluster", "ray": "Ray"}

# Python module each peer needs; a peer whose module does not import is reported, not run.
MODULES = {"joblib": "joblib", "dask": "distributed", "ray": "ray"}
