"""One writer per table, across processes and threads: a lease per table.

Every Delta write in the lake (``lake.io``) holds the lease of the table it writes; the ingest of a
file holds the lease of its source's raw table from the manifest look-up to the manifest row, so a
second process landing the same source waits and then finds the file already landed. Airflow's pool
``lake_writes`` still serialises the DAG tasks; the lease is what protects the lake from writers
that do not go through Airflow (a `lake ingest` by hand next to a scheduled run).

Why a lease is needed at all: on a local folder Delta's log store (HDFSLogStore) checks "commit file
exists" and renames in two steps, atomic only inside one JVM, so two processes committing the same
version can both succeed and the second silently replaces the first's commit; on a new table the
loser fails with DELTA_PROTOCOL_CHANGED, later with DELTA_CONCURRENT_APPEND.

The lease of table ``<zone>/<name>`` is the file ``<root>/_locks/<zone>__<name>.lock``: one JSON
object naming the holder (host, pid and the process's start time, the pid of its Spark JVM, the
command, since when, lease expiry). It is made with three conditional operations of a ``LeaseStore``:

- ``create``: write the lease only if no lease exists (local: ``os.link`` of a complete temporary
  file, which fails if the name exists; S3: ``PUT`` with ``If-None-Match: *``);
- ``replace``: compare-and-swap on the lease's etag (local: under an ``flock`` of a side file; S3:
  ``PUT`` with ``If-Match: <etag>``), used to renew a lease and to take over a stale one;
- ``delete``: remove the lease only if it is still ours (S3: a tombstone written with ``If-Match``).

A lease is stale, and taken over with ``replace``, when its holder is dead: on the same host, neither
its pid nor its JVM's pid is alive with the start time recorded (a reused pid is not the holder); on
another host, when it has not been renewed before ``expires`` (holders renew every third of
``LEASE_SECONDS`` from a background thread). A live holder on the same host is never taken over,
however long it runs.

Inside one process the lease is re-entrant per thread and shared by threads (``jobs.landing.ingest.run_many``
lands several sources at once): a thread waits for another thread of its process on a
``threading.RLock`` first, then for other processes on the lease.

Two stores: ``LocalStore`` (a folder) and ``S3Store`` (an ``s3a://`` root: the same leases as
objects ``<root>/_locks/<key>``, written with S3's conditional PUTs through obstore, the Python
binding of the Rust ``object_store`` crate that delta-rs uses; AWS S3 and SeaweedFS honour
``If-None-Match: *`` and ``If-Match``, shown by tests/test_cluster.py against the real SeaweedFS).
S3 has no conditional DELETE that every store honours, so releasing a lease replaces it (``If-Match``)
with an empty object, a tombstone, which ``create`` in turn replaces with ``If-Match`` and ``read``
and ``keys`` treat as absent. See README "Running on a cluster" for what this does and does not
guarantee on S3 (Delta's own S3 log store keeps concurrent writers of one table inside one driver).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from lake.log import log

LEASE_SECONDS = 60.0
POLL_SECONDS = 0.25
DEFAULT_TIMEOUT = 1800.0  # LAKE_LOCK_TIMEOUT
LOCKS_DIR = "_locks"


class LockBusy(RuntimeError):
    """Another writer holds the table and did not finish within the timeout; one line naming it."""


# ------------------------------------------------------------------ stores

class LocalStore:
    """Leases as files in a local folder (see the module docstring for the three operations)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def _path(self, key: str) -> str:
        return os.path.join(self.folder, key)

    @staticmethod
    def etag(body: bytes) -> str:
        return hashlib.sha256(body).hexdigest()[:32]

    def _write_tmp(self, key: str, body: bytes) -> str:
        os.makedirs(self.folder, exist_ok=True)
        tmp = os.path.join(self.folder, f".{key}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def create(self, key: str, body: bytes) -> str | None:
        tmp = self._write_tmp(key, body)
        try:
            os.link(tmp, self._path(key))  # fails if the name exists: create-if-absent, complete when visible
        except FileExistsError:
            return None
        finally:
            os.unlink(tmp)
        return self.etag(body)

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            with open(self._path(key), "rb") as f:
                body = f.read()
        except FileNotFoundError:
            return None
        return body, self.etag(body)

    @contextmanager
    def _cas(self, key: str):
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(os.path.join(self.folder, f".{key}.cas"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def replace(self, key: str, body: bytes, etag: str) -> str | None:
        with self._cas(key):
            cur = self.read(key)
            if cur is None or cur[1] != etag:
                return None
            os.replace(self._write_tmp(key, body), self._path(key))
            return self.etag(body)

    def delete(self, key: str, etag: str) -> bool:
        with self._cas(key):
            cur = self.read(key)
            if cur is None or cur[1] != etag:
                return False
            os.unlink(self._path(key))
            return True

    def keys(self) -> list[str]:
        if not os.path.isdir(self.folder):
            return []
        return sorted(n for n in os.listdir(self.folder) if n.endswith(".lock") and not n.startswith("."))


class S3Store:
    """Leases as objects under ``<root>/_locks/`` of an S3 bucket (s3/s3a URIs), with conditional PUTs:
    ``create`` = ``If-None-Match: *`` (over a tombstone: ``If-Match`` its etag), ``replace`` =
    ``If-Match: <etag>``, ``delete`` = a tombstone (an empty object) written with ``If-Match``. The
    endpoint and keys are those of the settings that name the bucket (``lake.settings.s3_settings``)."""

    TOMBSTONE = b""

    def __init__(self, folder_uri: str) -> None:
        from obstore.store import S3Store as _S3

        from lake.settings import bucket_of, s3_settings

        self.folder = folder_uri.rstrip("/")
        rest = self.folder.split("://", 1)[1]
        self.prefix = rest.split("/", 1)[1] if "/" in rest else ""
        s = s3_settings(folder_uri)
        path_style = s.s3_path_style if s.s3_path_style is not None else bool(s.s3_endpoint)
        kw: dict = {"region": s.s3_region, "virtual_hosted_style_request": not path_style,
                    "conditional_put": "etag"}
        if s.s3_endpoint:
            kw["endpoint"] = s.s3_endpoint
            if s.s3_endpoint.startswith("http://"):
                kw["client_options"] = {"allow_http": True, "timeout": "30s"}
        if s.s3_access_key or s.s3_secret_key:
            kw.update(access_key_id=s.s3_access_key, secret_access_key=s.s3_secret_key)
        self.store = _S3(bucket_of(folder_uri), **kw)

    def _path(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _get(self, key: str) -> tuple[bytes, str] | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            r = obstore.get(self.store, self._path(key))
            return bytes(r.bytes()), r.meta["e_tag"]
        except (NotFoundError, FileNotFoundError):
            return None

    def _put(self, key: str, body: bytes, mode) -> str | None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

        try:
            return obstore.put(self.store, self._path(key), body, mode=mode)["e_tag"]
        except (AlreadyExistsError, PreconditionError, NotFoundError, FileNotFoundError, FileExistsError):
            return None

    def create(self, key: str, body: bytes) -> str | None:
        etag = self._put(key, body, "create")
        if etag is not None:
            return etag
        cur = self._get(key)
        if cur is not None and cur[0] == self.TOMBSTONE:  # released: take its place, if nobody else did
            return self._put(key, body, {"e_tag": cur[1]})
        return None

    def read(self, key: str) -> tuple[bytes, str] | None:
        cur = self._get(key)
        return None if cur is None or cur[0] == self.TOMBSTONE else cur

    def replace(self, key: str, body: bytes, etag: str) -> str | None:
        return self._put(key, body, {"e_tag": etag})

    def delete(self, key: str, etag: str) -> bool:
        return self._put(key, self.TOMBSTONE, {"e_tag": etag}) is not None

    def keys(self) -> list[str]:
        import obstore

        prefix = f"{self.prefix}/" if self.prefix else ""
        out = []
        for batch in obstore.list(self.store, prefix=prefix or None):
            for m in batch:
                name = m["path"][len(prefix):]
                if m["size"] > 0 and name.endswith(".lock") and "/" not in name and not name.startswith("."):
                    out.append(name)
        return sorted(out)


_S3_STORES: dict[str, S3Store] = {}


def store_at(root: str) -> LocalStore | S3Store:
    """The lease store of the lake root ``root``: ``<root>/_locks`` as a folder or S3 objects."""
    from lake.settings import is_s3

    root = root.rstrip("/")
    if is_s3(root):
        folder = f"{root}/{LOCKS_DIR}"
        with _registry_lock:
            if folder not in _S3_STORES:
                _S3_STORES[folder] = S3Store(folder)
            return _S3_STORES[folder]
    if "://" in root and not root.startswith("file://"):
        raise ValueError(f"table leases are implemented for local folders and S3, not {root}")
    return LocalStore(os.path.join(root.removeprefix("file://"), LOCKS_DIR))


def store_for(path: str) -> tuple[LocalStore | S3Store, str]:
    """(store, key) of the lease of the table at ``path`` (``<root>/<zone>/<name>``): the store is
    ``<root>/_locks`` (a folder, or objects of an S3 bucket), the key ``<zone>__<name>.lock``."""
    path = path.rstrip("/")
    parent, name = path.rsplit("/", 1)
    root, zone = parent.rsplit("/", 1)
    return store_at(root), f"{zone}__{name}.lock"


# ------------------------------------------------------------------ holders

def _start_time(pid: int) -> float | None:
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(p.create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def _jvm_pid() -> int | None:
    """The pid of this process's Spark JVM, if one runs: it may still be committing after the Python
    process died, so the holder counts as alive while it lives."""
    try:
        from pyspark import SparkContext

        gw = SparkContext._gateway
        proc = getattr(gw, "proc", None) if gw is not None else None
        return proc.pid if proc is not None else None
    except Exception:
        return None


def _command() -> str:
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:] if sys.argv and sys.argv[0] else ["python"]
    text = " ".join(argv)
    return text if len(text) <= 160 else text[:157] + "..."


def holder_line(h: dict) -> str:
    """One line naming a holder, for messages."""
    return (f"pid {h.get('pid')} on host {h.get('host')} (`{h.get('command', '?')}`, since {h.get('since', '?')})")


def _alive(h: dict) -> bool:
    if h.get("host") != socket.gethostname():
        return time.time() < float(h.get("expires", 0))
    for pid_key, start_key in (("pid", "pid_started"), ("jvm_pid", "jvm_started")):
        started = _start_time(int(h[pid_key])) if h.get(pid_key) else None
        if started is not None and abs(started - float(h.get(start_key) or 0)) < 1.0:
            return True
    return False


# ------------------------------------------------------------------ in-process registry and heartbeat

class _Entry:
    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.owner = ""
        self.store: LocalStore | S3Store | None = None
        self.key = ""
        self.table = ""
        self.body: dict = {}
        self.etag = ""
        self.io = threading.Lock()  # store operations of this entry (heartbeat vs release)


_registry: dict[str, _Entry] = {}
_registry_lock = threading.Lock()
_heartbeat: threading.Thread | None = None


def _entry(ident: str) -> _Entry:
    with _registry_lock:
        e = _registry.get(ident)
        if e is None:
            e = _registry[ident] = _Entry()
        return e


def _encode(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _renew_all() -> None:
    while True:
        time.sleep(LEASE_SECONDS / 3)
        with _registry_lock:
            held = [e for e in _registry.values() if e.depth > 0 and e.store is not None]
        for e in held:
            with e.io:
                if e.depth == 0 or e.store is None:
                    continue
                body = {**e.body, "renewed": _now(), "expires": time.time() + LEASE_SECONDS}
                etag = e.store.replace(e.key, _encode(body), e.etag)
                if etag is None:
                    log.error("%s: the lease was taken over by another writer while this process held it", e.table)
                else:
                    e.body, e.etag = body, etag


def _ensure_heartbeat() -> None:
    global _heartbeat
    with _registry_lock:
        if _heartbeat is None or not _heartbeat.is_alive():
            _heartbeat = threading.Thread(target=_renew_all, name="lake-lease-heartbeat", daemon=True)
            _heartbeat.start()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def timeout_from_env() -> float:
    from lake.settings import Settings

    return Settings.from_env().lock_timeout


# ------------------------------------------------------------------ the lock

def table_name(path: str) -> str:
    parent, name = path.rstrip("/").rsplit("/", 1)
    return f"{parent.rsplit('/', 1)[-1]}/{name}"


@contextmanager
def table_lock(path: str, timeout: float | None = None):
    """Hold the lease of the Delta table at ``path`` (``<root>/<zone>/<name>``) for the block.
    Re-entrant in a thread; threads of one process and other processes wait their turn for up to
    ``timeout`` seconds (default ``LAKE_LOCK_TIMEOUT``), then LockBusy names the holder."""
    acquire(path, timeout)
    try:
        yield
    finally:
        release(path)


def acquire(path: str, timeout: float | None = None) -> None:
    timeout = timeout_from_env() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    table = table_name(path)
    store, key = store_for(path)
    e = _entry(f"{path.rstrip('/').rsplit('/', 2)[0]}|{key}")
    me = threading.current_thread().name
    if not e.rlock.acquire(blocking=False):
        log.info("%s: waiting for thread %s of this process, which is writing it", table, e.owner)
        if not e.rlock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise LockBusy(f"{table} is being written by thread {e.owner} of this process; waited {timeout:.0f} s")
    if e.depth > 0:  # this thread already holds it
        e.depth += 1
        _note_jvm(e)
        return
    try:
        e.body, e.etag = _acquire_lease(store, key, table, deadline, timeout)
        e.store, e.key, e.table = store, key, table
        _ensure_heartbeat()
        e.owner = me
        e.depth = 1
    except BaseException:
        e.rlock.release()
        raise


def _note_jvm(e: _Entry) -> None:
    """Record the Spark JVM in a lease taken before the JVM started (the first write of a process):
    after the Python process dies its JVM may still finish a commit, so the holder is alive while
    either runs."""
    if e.store is None or e.body.get("jvm_pid"):
        return
    jvm = _jvm_pid()
    if not jvm:
        return
    with e.io:
        body = {**e.body, "jvm_pid": jvm, "jvm_started": _start_time(jvm)}
        etag = e.store.replace(e.key, _encode(body), e.etag)
        if etag is not None:
            e.body, e.etag = body, etag


def _acquire_lease(store: LocalStore | S3Store, key: str, table: str, deadline: float, timeout: float) -> tuple[dict, str]:
    jvm = _jvm_pid()
    body = {
        "table": table, "host": socket.gethostname(), "pid": os.getpid(), "pid_started": _start_time(os.getpid()),
        "jvm_pid": jvm, "jvm_started": _start_time(jvm) if jvm else None, "command": _command(),
        "thread": threading.current_thread().name, "since": _now(), "renewed": _now(),
        "expires": time.time() + LEASE_SECONDS, "token": uuid.uuid4().hex,
    }
    data = _encode(body)
    told = False
    while True:
        etag = store.create(key, data)
        if etag is not None:
            return body, etag
        cur = store.read(key)
        if cur is None:
            continue  # released between the two calls
        try:
            holder = json.loads(cur[0])
        except ValueError:
            holder = {}
        if not holder or not _alive(holder):
            etag = store.replace(key, data, cur[1])
            if etag is not None:
                log.warning("%s: took over the lock of %s, which is no longer running", table,
                            holder_line(holder) if holder else "an unreadable lock file")
                return body, etag
            continue
        if time.monotonic() >= deadline:
            raise LockBusy(f"{table} is being written by {holder_line(holder)}"
                           + (f"; waited {timeout:.0f} s" if timeout > 0 else "") + ". Try again when it has finished")
        if not told:
            log.info("%s: waiting for %s", table, holder_line(holder))
            told = True
        time.sleep(POLL_SECONDS)


def release(path: str) -> None:
    store, key = store_for(path)
    e = _entry(f"{path.rstrip('/').rsplit('/', 2)[0]}|{key}")
    e.depth -= 1
    if e.depth == 0:
        try:
            if e.store is not None:
                with e.io:
                    if not e.store.delete(e.key, e.etag):
                        log.error("%s: the lease was no longer this process's when it was released", e.table)
                    e.store = None
        finally:
            e.owner = ""
            e.rlock.release()
    else:
        e.rlock.release()


def holders(root: str) -> list[dict]:
    """The leases held now under ``root`` (for ``lake status`` and tests): one dict per lock file,
    with ``stale`` true when its holder is no longer running."""
    store = store_at(root)
    out = []
    for key in store.keys():
        cur = store.read(key)
        if cur is None:
            continue
        try:
            h = json.loads(cur[0])
        except ValueError:
            h = {"table": key, "unreadable": True}
        h["stale"] = not _alive(h) if "pid" in h or "host" in h else True
        out.append(h)
    return out
