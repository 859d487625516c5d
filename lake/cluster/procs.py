"""State folder, generated secrets, ports and the processes the cluster tier starts (by pid file)."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from lake.settings import REPO

HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """A component did not install, start or answer: one line naming it and its log file."""


def home() -> Path:
    """The state folder: LAKE_CLUSTER_HOME or .cache/cluster in the repository (git-ignored)."""
    env = os.environ.get("LAKE_CLUSTER_HOME")
    return Path(env).expanduser().resolve() if env else REPO / ".cache" / "cluster"


def bin_dir() -> Path:
    """Where `lake cluster install` puts built binaries (weed): .cache/bin, shared by state folders."""
    return REPO / ".cache" / "bin"


def _private_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def secret(name: str, nbytes: int = 24) -> str:
    """A generated secret kept in <home>/secrets.json (0600), the same for the life of the folder."""
    path = home() / "secrets.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if name not in data:
        data[name] = secrets.token_hex(nbytes) if name.endswith("access_key") else secrets.token_urlsafe(nbytes)
        _private_write(path, json.dumps(data, indent=2) + "\n")
    return data[name]


def write_private(path: Path, text: str) -> None:
    _private_write(path, text)


def read_state(name: str) -> dict:
    path = home() / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(name: str, data: dict) -> None:
    path = home() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers bind (SO_REUSEADDR): a port held only by TIME_WAIT connections is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# Ports are picked below Linux's ephemeral range (32768-60999), where outgoing connections could
# take a port between the check and the server's bind.
PORT_RANGE = (20000, 32000)


def free_port(preferred: int | None = None, taken: set[int] | None = None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else a free port from PORT_RANGE (not in ``taken``)."""
    import random

    taken = taken if taken is not None else set()
    if preferred and preferred not in taken and port_free(preferred):
        taken.add(preferred)
        return preferred
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(*PORT_RANGE)
        if port not in taken and port_free(port):
            taken.add(port)
            return port
    raise ClusterError(f"no free port on 127.0.0.1 in {PORT_RANGE[0]}-{PORT_RANGE[1]}")


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_json(url: str, timeout: float = 2.0, headers: dict | None = None, data: bytes | None = None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (loopback URLs built here)
        return json.loads(r.read().decode() or "null")


# ---------------------------------------------------------------- processes

def pid_file(name: str) -> Path:
    return home() / "pids" / f"{name}.pid"


def log_file(name: str) -> Path:
    return home() / "logs" / f"{name}.log"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def read_pid(name: str) -> int | None:
    try:
        return int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None


def running(name: str) -> int | None:
    """The pid of component ``name`` if its pid file names a live process."""
    pid = read_pid(name)
    return pid if pid and alive(pid) else None


def start(name: str, argv: list[str], env: dict | None = None, cwd: Path | None = None) -> int:
    """Start ``argv`` in its own session (so ``stop`` ends it with its children), output to
    <home>/logs/<name>.log, pid to <home>/pids/<name>.pid. A live one is left as it is."""
    pid = running(name)
    if pid:
        return pid
    log = log_file(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        out.flush()
        try:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, cwd=str(cwd) if cwd else None, start_new_session=True)
        except OSError as e:
            raise ClusterError(f"{name}: cannot start {argv[0]}: {e}") from None
    pid_file(name).write_text(f"{p.pid}\n")
    return p.pid


def stop(name: str, timeout: float = 20.0) -> bool:
    """Stop component ``name`` (its process group) by its pid file; True if something was running.
    Idempotent: no pid file or a dead pid is not an error."""
    pid = read_pid(name)
    was = bool(pid and (alive(pid) or _members(pid)))  # a leader gone, its session's tasks still running
    if was:
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _members(pid):
            time.sleep(0.2)
        if _members(pid):
            _signal_group(pid, signal.SIGKILL)
            time.sleep(0.5)
    pid_file(name).unlink(missing_ok=True)
    return was


def _signal_group(pid: int, sig: int) -> None:
    """Signal what ``start`` started: its process group and every process still in its session. A
    child may move to a group of its own (Airflow's LocalExecutor runs each task in one, with the
    task's Spark JVM and Python workers under it) but stays in the session, so the task of a run
    stopped half-way does not outlive its scheduler."""
    try:
        os.killpg(pid, sig)  # the session started by `start`: pid == process group id == session id
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
    for member in _members(pid):
        try:
            os.kill(member, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _members(sid: int) -> list[int]:
    """Live (not zombie) processes whose process group or session is ``sid``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and sid in (int(fields[2]), int(fields[3])):
            out.append(int(d.name))
    return out


def wait_until(check: Callable[[], bool], what: str, name: str, timeout: float) -> None:
    """Poll ``check`` until it is true; one-line ClusterError naming the component and its log if
    the process exits or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        pid = read_pid(name)
        if pid is not None and not alive(pid):
            raise ClusterError(f"{what} exited while starting: see {log_file(name)}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} did not answer within {timeout:.0f} s: see {log_file(name)}")
        time.sleep(0.5)


def write_env_file(path: Path, env: dict) -> None:
    """KEY=VALUE lines (values with no quoting needs), 0600: the file holds keys."""
    for k, v in env.items():
        if any(c in str(v) for c in " \t\n'\"$`\\#"):
            raise ClusterError(f"environment value of {k} would need shell quoting: {v!r}")
    write_private(path, "".join(f"{k}={v}\n" for k, v in env.items()))
