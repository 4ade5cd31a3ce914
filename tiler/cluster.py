"""Tiler work as tasks on a dask.distributed cluster: connecting, bounded task loops, worker caches."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import os
import pickle
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from tiler.errors import TilerError

__all__ = ["CONNECT_TIMEOUT", "Cluster", "ClusterUnavailable", "SourceRecipe", "cached",
           "connect", "run_bounded", "source_recipe"]

log = logging.getLogger(__name__)

#: Seconds to reach the scheduler (and for it to have a worker) before giving up.
CONNECT_TIMEOUT = 10.0
#: Seconds a failed run waits for its tasks still running on workers to end (see Cluster.drain).
DRAIN_TIMEOUT = 120.0
#: Sources that pickle to at most this many bytes are sent as they are; larger ones (and those
#: that do not pickle, e.g. holding open files) are reopened from their path on the workers.
SOURCE_PICKLE_LIMIT = 64 << 20
#: Objects each worker process keeps opened at once (sources, block workers) across runs.
CACHE_SIZE = 8
#: Largest image plane a worker reopens: the caller's reader already checked the limit.
REOPEN_MAX_PIXELS = 1 << 62

T = TypeVar("T")
R = TypeVar("R")


class ClusterUnavailable(TilerError):
    """The dask scheduler named by the caller cannot be reached or has no workers."""


@dataclass
class Cluster:
    """A connection to a dask scheduler for one run: tasks are keyed by the run, so that a
    failed run can wait for its tasks still running (``drain``) and workers can drop what they
    cached for it."""

    client: Any  # distributed.Client
    address: str
    threads: int
    run_id: str

    def __post_init__(self) -> None:
        self._executor = self.client.get_executor(pure=False)
        self._numbers = itertools.count()

    def submit(self, function: Callable[..., R], *args: Any) -> cf.Future:
        """Run ``function(*args)`` as a task; a concurrent.futures Future (cancel reaches the
        task).  Arguments that are results of ``share`` arrive as the shared values."""
        key = f"tiler-{self.run_id}-{next(self._numbers)}"
        return self._executor.submit(function, *args, key=key)

    def share(self, value: Any) -> Any:
        """Send ``value`` to the cluster once; pass the result to ``submit`` instead of it."""
        return self.client.scatter(value, hash=False)

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait until no task of this run runs on any worker (cancelled ones finish their
        work): afterwards nothing of this run writes any more."""
        prefix = f"tiler-{self.run_id}-"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                busy = self.client.run(_tasks_with_prefix, prefix, on_error="ignore")
            except Exception:  # noqa: BLE001 - a broken connection leaves nothing to wait for
                return
            if not any(isinstance(count, int) and count for count in busy.values()):
                return
            time.sleep(0.05)
        log.warning("tasks of run %s still run on %s after %.0f s", self.run_id, self.address,
                    timeout)


@contextmanager
def connect(scheduler: str, *, timeout: float = CONNECT_TIMEOUT) -> Iterator[Cluster]:
    """A Cluster on the dask scheduler at ``scheduler`` (e.g. "tcp://10.0.0.5:8786").

    Raises ClusterUnavailable, naming the address, when it is malformed, cannot be reached
    within ``timeout`` seconds or has no worker by then.  On an error inside the block the
    run's tasks are cancelled by their loops and drained here; at the end the workers forget
    what they cached for the run and the client is closed.
    """
    from distributed import Client  # imported here: the local path never pays for it

    _probe(scheduler, timeout)
    try:
        client = Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, ValueError, TimeoutError) as error:
        raise ClusterUnavailable(f"cannot connect to the dask scheduler at {scheduler}: "
                                 f"{error}") from error
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as error:
            raise ClusterUnavailable(f"the dask scheduler at {scheduler} has no workers "
                                     f"(waited {timeout:.0f} s)") from error
        threads = sum(client.nthreads().values())
        cluster = Cluster(client, scheduler, max(1, threads), uuid.uuid4().hex[:12])
        try:
            yield cluster
        except BaseException:
            cluster.drain()
            raise
        finally:
            try:
                client.run(_forget, cluster.run_id, on_error="ignore")
            except Exception:  # noqa: BLE001 - the workers' caches are bounded anyway
                log.warning("could not clear worker caches of run %s", cluster.run_id)
    finally:
        client.close()


def _probe(scheduler: str, timeout: float) -> None:
    """Fail fast on a malformed or unreachable TCP address, before distributed retries."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(scheduler if "://" in scheduler else f"tcp://{scheduler}")
        if scheme not in ("tcp", "tls"):
            return
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as error:
        raise ClusterUnavailable(f"{scheduler!r} is not a dask scheduler address (like "
                                 f"tcp://host:8786): {error}") from error
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise ClusterUnavailable(f"cannot connect to the dask scheduler at {scheduler}: "
                                 f"{error}") from error


def run_bounded(submit: Callable[[T], cf.Future], items: Iterable[T], limit: int,
                done: Callable[[T, Any], None]) -> None:
    """Run ``submit(item)`` for every item with at most ``limit`` tasks unfinished, calling
    ``done(item, result)`` here as each finishes; on an error (also from ``done``) the tasks
    not finished are cancelled."""
    pending: dict[cf.Future, T] = {}
    queue = iter(items)
    try:
        while True:
            for item in queue:
                pending[submit(item)] = item
                if len(pending) >= limit:
                    break
            if not pending:
                return
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                done(pending.pop(future), future.result())
    finally:
        for future in pending:
            future.cancel()


_cache: OrderedDict[str, Any] = OrderedDict()
_cache_lock = threading.Lock()


def cached(key: str, make: Callable[[], T]) -> T:
    """The object this worker process made for ``key`` (a run id first), made once by ``make``;
    the least recently used of more than CACHE_SIZE are closed (if they can be) and dropped."""
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        value = _cache[key] = make()
        evicted = [_cache.popitem(last=False)[1] for _ in range(len(_cache) - CACHE_SIZE)]
    for old in evicted:
        _close(old)
    return value


def _forget(run_id: str) -> int:
    """Close and drop what this worker cached for run ``run_id`` (run on every worker)."""
    with _cache_lock:
        keys = [key for key in _cache if key.startswith(run_id)]
        values = [_cache.pop(key) for key in keys]
    for value in values:
        _close(value)
    return len(values)


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        close()


#: States of a worker's task that is running or may still start (a cancelled task keeps
#: running until its function returns); finished tasks only hold results ("memory").
_BUSY_STATES = frozenset({"waiting", "ready", "constrained", "executing", "long-running",
                          "cancelled", "resumed"})


def _tasks_with_prefix(prefix: str, dask_worker: Any = None) -> int:
    """How many tasks whose key starts with ``prefix`` run or may still start on this worker."""
    if dask_worker is None:
        return 0
    return sum(1 for key, task in list(dask_worker.state.tasks.items())
               if str(key).startswith(prefix) and task.state in _BUSY_STATES)


@dataclass(frozen=True)
class SourceRecipe:
    """How a worker gets an image or volume source: unpickled, or reopened from its path."""

    key: str
    kind: str
    pickled: bytes | None = None
    path: str | None = None

    def open(self) -> Any:
        """The source, opened once per worker process."""
        return cached(self.key, self._open)

    def _open(self) -> Any:
        if self.pickled is not None:
            return pickle.loads(self.pickled)  # made by source_recipe in the client
        from tiler.readers import open_image

        if not os.path.exists(self.path):  # type: ignore[arg-type]
            raise TilerError(f"the dask worker on {socket.gethostname()} cannot see {self.path}: dask workers "
                             f"need the job's data folder at the same path (a shared filesystem)")
        source = open_image(self.path, max_pixels=REOPEN_MAX_PIXELS)  # type: ignore[arg-type]
        if type(source).__name__ != self.kind:
            source.close()
            raise TilerError(f"{self.path} opens as {type(source).__name__} on the dask "
                             f"worker, not as {self.kind}")
        return source


def source_recipe(source: Any, run_id: str) -> SourceRecipe:
    """A SourceRecipe for ``source``: pickled if it pickles small (in-memory and raw sources),
    else its path, reopened on the workers (which must see the same file: a shared filesystem).
    ValueError when neither is possible."""
    kind, key = type(source).__name__, f"{run_id}-source"
    try:
        pickled = pickle.dumps(source, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - open files, locks, ...: reopen from the path instead
        pickled = None
    if pickled is not None and len(pickled) <= SOURCE_PICKLE_LIMIT:
        return SourceRecipe(key, kind, pickled=pickled)
    path = getattr(source, "path", None)
    if path is None:
        raise ValueError(f"{source!r} cannot run on a dask cluster: it has no file path to "
                         f"reopen and does not pickle to at most {SOURCE_PICKLE_LIMIT} bytes")
    return SourceRecipe(key, kind, path=os.path.abspath(os.fspath(path)))
