"""The optional cluster set-up (`lake cluster install`, run by `./setup.sh --cluster`):

- SeaweedFS's ``weed`` built from its Go module through the Go module proxy: ``go mod download`` of the
  pinned version, a writable copy of the module, ``go build -o .cache/bin/weed ./weed`` (``go install``
  refuses the module because its go.mod has replace directives). Minutes on 2 cores; ~230 MB.
- Debian's ``postgresql`` with apt-get, only when no ``initdb`` is found (needs root).

Both are skipped when already there, so running it again takes a second.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lake.cluster.procs import ClusterError, bin_dir

# SeaweedFS (Apache-2.0). A pseudo-version: the one the Go module proxy serves here.
SEAWEEDFS_MODULE = "github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"


def weed_path() -> Path:
    return bin_dir() / "weed"


def weed_stamp() -> Path:
    return bin_dir() / "weed.version"


def weed_installed() -> bool:
    return weed_path().exists() and weed_stamp().exists() and weed_stamp().read_text().strip() == SEAWEEDFS_VERSION


def install_weed(log=print) -> Path:
    """Build ``weed`` at SEAWEEDFS_VERSION into .cache/bin (skipped when that version is there)."""
    if weed_installed():
        log(f"SeaweedFS {SEAWEEDFS_VERSION} already built: {weed_path()}")
        return weed_path()
    go = shutil.which("go")
    if not go:
        raise ClusterError("go not found: install Go (1.26+) to build SeaweedFS's weed")
    log(f"downloading {SEAWEEDFS_MODULE}@{SEAWEEDFS_VERSION} through the Go module proxy")
    out = subprocess.run([go, "mod", "download", "-json", f"{SEAWEEDFS_MODULE}@{SEAWEEDFS_VERSION}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ClusterError(f"go mod download of SeaweedFS failed: {(out.stdout + out.stderr).strip()[-400:]}")
    info = json.loads(out.stdout)
    if info.get("Error") or not info.get("Dir"):
        raise ClusterError(f"go mod download of SeaweedFS failed: {info.get('Error')}")
    bin_dir().mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="weed-src-") as tmp:
        src = Path(tmp) / "seaweedfs"
        shutil.copytree(info["Dir"], src)  # the module cache is read-only; go build wants a writable tree
        for root, dirs, files in os.walk(src):
            for n in dirs + files:
                p = os.path.join(root, n)
                os.chmod(p, os.stat(p).st_mode | 0o200)
        log("building weed (go build ./weed): several minutes on 2 cores")
        target = bin_dir() / "weed.tmp"
        env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
        build = subprocess.run([go, "build", "-o", str(target), "./weed"], cwd=src, env=env,
                               capture_output=True, text=True)
        if build.returncode != 0:
            raise ClusterError(f"go build of weed failed: {build.stderr.strip()[-600:]}")
    target.replace(weed_path())
    weed_stamp().write_text(SEAWEEDFS_VERSION + "\n")
    log(f"built {weed_path()} in {time.monotonic() - t0:.0f} s")
    return weed_path()


def pg_bin_dir() -> Path | None:
    """Debian keeps PostgreSQL's server programs in /usr/lib/postgresql/<major>/bin: the newest."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def install_postgres(log=print) -> Path:
    """Debian's postgresql with apt-get when no initdb is found."""
    found = pg_bin_dir()
    if found:
        log(f"PostgreSQL found: {found}")
        return found
    if os.geteuid() != 0:
        raise ClusterError("PostgreSQL is not installed and this is not root: run "
                           "`apt-get install -y postgresql` as root, then `lake cluster install` again")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log("installing Debian's postgresql with apt-get")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
    found = pg_bin_dir()
    if not found:
        raise ClusterError("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")
    return found


def install(log=print) -> None:
    install_postgres(log)
    install_weed(log)


if __name__ == "__main__":
    try:
        install()
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
