"""Prometheus metrics: what each process counts, and the text a scrape of them reads.

``serve``'s two processes and every ``worker`` of a host that share a store count into one
folder, each into files of its own (prometheus_client's multiprocess mode: a count is a
write to a memory-mapped file, about a microsecond); a scrape sums the files
(:func:`exposition`). The store's own state (deliveries by status, the oldest pending) is not
counted here: the admin listener samples it at each scrape.

No label holds an id, an openid or a phone number: errcodes are :class:`ErrCode`'s, plugins
are configured names, outcomes :class:`Outcome`'s, so the series stay as few however many
payments pass. A notification is counted once, by the process that decided its reply: the
engine (or a router in one process) for what it read; the HTTP process for 41300, which it
answers unread, and for 50001 when the engine is down or late. (One the engine answered
after the HTTP process had given up on it counts twice: as decided, and as the 50001 sent.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from arrears_router.errcodes import ErrCode

__all__ = [
    "ACCEPT_BUCKETS",
    "CONTENT_TYPE",
    "DELIVERY_BUCKETS",
    "MetricsDirError",
    "Outcome",
    "clear_dead",
    "count_attempt",
    "count_notification",
    "count_quarantined",
    "exposition",
    "metrics_dir",
    "notification_totals",
    "observe_accept",
    "use_metrics_dir",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus's text format, as :func:`exposition` writes it."""
ACCEPT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 5.0)
"""A notification is answered in 1 to 50 ms; past 3 s the HTTP process answers 50001, and
WeChat gives up at 5 s."""
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
"""A plugin's call takes a millisecond (a local write) to its timeout (30 s by default)."""
QUARANTINED = (ErrCode.UNDECRYPTABLE, ErrCode.INVALID_PAYLOAD, ErrCode.CONFLICTING_DUPLICATE)
"""The errcodes of authentic requests that are quarantined rather than accepted."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's own variable: where a process writes its values (read as each value is
made), and whether it does at all (read once, at its import). Child processes inherit it."""
_SUMMED_KINDS = ("counter", "histogram", "summary")
"""The kinds of file whose values a scrape adds up across processes, as opposed to gauges."""
_LOCK_FILE = ".lock"


class Outcome(StrEnum):
    """What a delivery's attempt came to, once recorded."""

    DONE = "done"
    RETRY = "retry"
    """Failed; due again after a backoff."""
    DEAD = "dead"
    """Failed for good (a PermanentError, or its attempts spent)."""
    LOST = "lost"
    """Its outcome could not be recorded (its lease had lapsed, or the store failed): it runs
    again."""


class MetricsDirError(Exception):
    """The metrics folder cannot be used: the message says why."""


K = TypeVar("K")
V = TypeVar("V")


class _Children(dict[K, V]):
    """A metric's children by label value, made on first use and then only looked up: the
    label resolution prometheus_client does on each ``labels()`` call is paid once."""

    def __init__(self, make: Callable[[K], V], known: Iterable[K] = ()) -> None:
        super().__init__()
        self._make = make
        for key in known:  # present from the start, at 0: a rate needs no first sample
            self[key] = make(key)

    def __missing__(self, key: K) -> V:
        child = self[key] = self._make(key)
        return child


class _PluginMetrics:
    def __init__(self, attempts: Counter, durations: Histogram, plugin: str) -> None:
        self.attempts = {outcome: attempts.labels(plugin, outcome) for outcome in Outcome}
        self.duration = durations.labels(plugin)


class _Metrics:
    """The metrics, made with the value class prometheus_client has at the time: values in
    memory, or in files of the metrics folder (made again when it changes)."""

    def __init__(self) -> None:
        # registry=None: a scrape reads the files of every process, never one's registry.
        notifications = Counter(
            "arrears_notifications", "Notifications answered, by the reply's errcode.",
            ["errcode"], registry=None)
        quarantined = Counter(
            "arrears_quarantine", "Authentic requests quarantined, by errcode (kept, counted"
            " again, or only counted past the quarantine's bounds).", ["errcode"], registry=None)
        self.accept = Histogram(
            "arrears_accept_duration_seconds", "Time from a callback request's start to its"
            " reply written, in the HTTP process.", buckets=ACCEPT_BUCKETS, registry=None)
        attempts = Counter(
            "arrears_delivery_attempts", "Delivery attempts, by plugin and outcome.",
            ["plugin", "outcome"], registry=None)
        durations = Histogram(
            "arrears_delivery_duration_seconds", "Time a plugin's call for a delivery took.",
            ["plugin"], buckets=DELIVERY_BUCKETS, registry=None)
        self.notifications: _Children[int, Counter] = _Children(
            lambda code: notifications.labels(str(int(code))), ErrCode)
        self.quarantined: _Children[int, Counter] = _Children(
            lambda code: quarantined.labels(str(int(code))), QUARANTINED)
        self.plugins: _Children[str, _PluginMetrics] = _Children(
            lambda plugin: _PluginMetrics(attempts, durations, plugin))


def _multiprocess_dir() -> Path | None:
    """The folder prometheus_client writes this process's values to, if any."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory or not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return Path(directory).absolute()


_directory = _multiprocess_dir()
_current = _Metrics()


def use_metrics_dir(directory: Path) -> None:
    """From now on count into ``directory`` (made, mode 0700, if it is not there), as do the
    child processes started from now on. Counts made before are not carried over.

    prometheus_client reads its variable once, as it is imported, which may have been before
    this call: its value class is replaced, and the metrics are made again with it.
    """
    global _directory, _current
    directory = directory.absolute()  # not resolved: a link in its place is refused
    if directory == _directory:  # the same files, never opened twice by one process
        return
    _check(directory)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _directory, _current = directory, _Metrics()


def _check(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = directory.lstat()
    except OSError as exc:
        raise MetricsDirError(f"cannot make {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(status.st_mode):  # a link, say, to where it should not write
        raise MetricsDirError(f"{directory} is not a folder")
    if status.st_uid != os.getuid():  # under a shared /tmp, someone else's folder
        raise MetricsDirError(f"{directory} belongs to another user")


def metrics_dir(store_url: str, configured: str = "") -> Path:
    """``[admin] metrics_dir`` when it is set; else a folder of this store's, under the
    system's temporary one, which every process of the host using the store finds alike."""
    if configured:
        return Path(configured)
    digest = hashlib.sha256(_without_credentials(store_url).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"arrears-router-metrics-{digest}"


def _without_credentials(url: str) -> str:
    """The store's URL, less what is not the store: the user and password (a folder's name
    is seen by every user of the host, and a short hash of a password can be guessed)."""
    url = re.sub(r"^([a-z]+://)[^/?#@]*@", r"\1", url)
    return re.sub(r"([?&])password=[^&#]*", r"\1", url)


# -- counting: the hot path is a dict lookup and a write to a mapped file


def count_notification(errcode: int) -> None:
    """A notification answered with ``errcode``: counted by the process that decided it."""
    _current.notifications[errcode].inc()


def observe_accept(seconds: float) -> None:
    """How long the HTTP process took over one callback request."""
    _current.accept.observe(seconds)


def count_quarantined(errcode: int) -> None:
    _current.quarantined[errcode].inc()


def count_attempt(plugin: str, outcome: Outcome, seconds: float) -> None:
    """One delivery attempt, once its outcome is recorded (or could not be), and how long
    the plugin's call took."""
    metrics = _current.plugins[plugin]
    metrics.attempts[outcome].inc()
    metrics.duration.observe(seconds)


# -- the folder: cleared of the dead, and read by a scrape


def clear_dead(directory: Path) -> None:
    """Fold the counts of the processes that have exited into one file a kind, and delete
    their files: the folder does not grow with each restart, and no sum ever goes down
    (Prometheus would read a counter reset in it)."""
    if not directory.is_dir():
        return
    with _locked(directory, fcntl.LOCK_EX):
        dead = [f for f in directory.glob("*.db") if not _alive(f)]
        for kind in _SUMMED_KINDS:
            if files := [f for f in dead if f.name.startswith(f"{kind}_")]:
                _fold(directory / f"{kind}_archive.db", files)
                # At once: a crash before this would count them twice, in the archive too.
                for file in files:
                    file.unlink(missing_ok=True)
        for file in dead:  # gauges of the dead too: nothing sums them
            file.unlink(missing_ok=True)


def _alive(file: Path) -> bool:
    """Whether the process that writes ``file`` (``KIND_[MODE_]PID.db``) is running; the
    archive files have no process."""
    pid = file.stem.rpartition("_")[2]
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _fold(archive: Path, files: list[Path]) -> None:
    """Add the values of ``files`` (of one kind) into ``archive``, replaced whole."""
    totals: defaultdict[str, float] = defaultdict(float)
    for file in [archive, *files] if archive.exists() else files:
        read = MmapedDict.read_all_values_from_file(str(file))  # type: ignore[no-untyped-call]
        for key, value, _, _ in read:
            totals[key] += value
    draft = archive.with_suffix(".draft")  # no *.db: a scrape never reads it half written
    draft.unlink(missing_ok=True)
    written = MmapedDict(str(draft))  # type: ignore[no-untyped-call]
    try:
        for key, value in totals.items():
            written.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
    finally:
        written.close()  # type: ignore[no-untyped-call]
    draft.replace(archive)


@contextlib.contextmanager
def _locked(directory: Path, operation: int) -> Iterator[None]:
    """A fold holds the folder alone; scrapes share it: none reads a fold half done."""
    with (directory / _LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, operation)
        yield  # the lock goes with the file's closing


class _Sampled(Collector):
    """Metrics read elsewhere (the store's state), handed to a scrape as they are."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def _summed(directory: Path, sampled: Iterable[Metric] = ()) -> CollectorRegistry:
    """What every process counted into ``directory``, summed, and the ``sampled`` metrics."""
    registry = CollectorRegistry(auto_describe=False)
    if directory.is_dir():  # not yet, before any process has counted
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(_Sampled(sampled))
    return registry


def _read_lock(directory: Path) -> contextlib.AbstractContextManager[object]:
    return _locked(directory, fcntl.LOCK_SH) if directory.is_dir() else contextlib.nullcontext()


def exposition(directory: Path, sampled: Iterable[Metric] = ()) -> bytes:
    """The text of a scrape (:data:`CONTENT_TYPE`): what every process counted into
    ``directory``, summed, then the ``sampled`` metrics. Reads files: run it off the loop."""
    registry = _summed(directory, sampled)
    with _read_lock(directory):
        return generate_latest(registry)


def notification_totals(directory: Path) -> dict[str, float]:
    """How many notifications the host's processes answered, by errcode, summed. Reads
    files: run it off the loop."""
    registry = _summed(directory)
    with _read_lock(directory):
        families = list(registry.collect())
    return {sample.labels["errcode"]: sample.value for family in families
            if family.name == "arrears_notifications" for sample in family.samples
            if sample.name == "arrears_notifications_total"}

