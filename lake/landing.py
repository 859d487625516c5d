"""The landing zone: verified copies of delivered files, and their check on every later use.

Landing a file (``land``): the delivered bytes are copied to a temporary name in the file's landing
folder (``landing/<source>/<sha256>/.<file name>.<random>.part``), the sha256 of what was written is
computed by reading the copy back, and only a copy with the delivered file's sha256 is renamed to its
final name ``landing/<source>/<sha256>/<file name>``. Local folders: ``os.replace``, atomic: a reader
sees no file or the whole file, never a truncated one. Object stores have no rename (pyarrow's S3
``move`` is a server-side copy and a delete): the object under the final key is written only after the
temporary object was verified, and a copy (like a PUT) makes an object visible whole or not at all, so
"atomic" there means: the final key never holds anything but the verified bytes; a crash can only leave
a ``.part`` object behind, which the next landing of that file deletes.

Every later reader of a landed copy (re-ingesting a file already in the manifest, the IoT
re-processing of a delivery day, ``lake verify``) calls ``verify`` first: a copy whose sha256 differs
from its ``landing/_manifest`` entry (or that is missing) is repaired from the delivered file in the
inbox when that still has the right sha256; otherwise it is a finding of defect type
``landed_copy_corrupt`` (docs/defects.md) and the copy is never read.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from lake import io
from lake.files import InputError, sha256_of
from lake.log import log
from lake.settings import Settings

MANIFEST = ("landing", "_manifest")
DEFECT = "landed_copy_corrupt"
RULE = "landing.sha256"
STAGE = "landing"
BLOCK = 8 << 20


def landed_uri(settings: Settings, source: str, sha: str, name: str) -> str:
    return settings.path("landing", source, sha, name)


def _hash_uri(uri: str) -> tuple[str, int] | None:
    """(sha256, bytes) of the file at ``uri``; None when it does not exist."""
    return _hash(*io.filesystem(uri))


def _hash(fs, path: str) -> tuple[str, int] | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    h = hashlib.sha256()
    n = 0
    with fs.open_input_stream(path) as f:
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def _remove_partials(fs, folder: str, name: str) -> None:
    info = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    for i in info:
        base = i.path.rsplit("/", 1)[-1]
        if i.type == pafs.FileType.File and base.startswith(f".{name}.") and base.endswith(".part"):
            try:
                fs.delete_file(i.path)
            except OSError:
                pass


def land(file: Path, uri: str, sha: str) -> str:
    """Copy ``file`` (whose sha256 is ``sha``) to ``uri``, verified, then renamed (module docstring).
    Returns "landed", or "present" when a verified copy was already there. Raises InputError when the
    copy does not have ``sha`` (the file changed while it was landed, or the storage is failing)."""
    found = _hash_uri(uri)
    if found is not None and found[0] == sha:
        return "present"
    fs, path = io.filesystem(uri)
    folder, name = path.rsplit("/", 1)
    io.make_parent(fs, path)
    _remove_partials(fs, folder, name)  # left by a copy that was killed
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:12]}.part"
    local = isinstance(fs, pafs.LocalFileSystem)
    try:
        if local:
            with open(file, "rb") as src, open(tmp, "wb") as dst:
                while True:
                    block = src.read(BLOCK)
                    if not block:
                        break
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
        else:
            pafs.copy_files(str(file), tmp, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        written = _hash(fs, tmp)
        if written is None or written[0] != sha:
            raise InputError(f"{file.name}: the copy written to landing has sha256 {written[0][:16] if written else '-'}…, "
                             f"the delivered file {sha[:16]}… (was the file changed while it was landed?); "
                             "nothing was landed")
        if local:
            os.replace(tmp, path)
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        else:
            fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise
    if found is not None:
        log.warning("%s: the landed copy had sha256 %s… (%d bytes); replaced by a verified copy of the delivered file",
                    name, found[0][:16], found[1])
    return "landed"


# ------------------------------------------------------------------ the manifest without a JVM

def manifest_rows(settings: Settings, source: str | None = None) -> list[dict]:
    """``landing/_manifest`` rows (source, file_name, sha256, bytes, batch_id, rows_read, …) read with
    deltalake; [] when the manifest is not a finished table yet."""
    from lake import tables

    path = io.table_path(settings, *MANIFEST)
    if "://" not in path and tables.state(path).kind != "table":
        return []
    try:
        t = io.delta_table(path).to_pyarrow_table()
    except Exception:  # no table yet on an object store
        return []
    rows = t.to_pylist()
    return [r for r in rows if source is None or r["source"] == source]


# ------------------------------------------------------------------ verification on use

@dataclass
class Verdict:
    status: str          # ok | repaired | corrupt
    uri: str
    message: str = ""
    found_sha: str = ""
    found_bytes: int = -1


def verify(settings: Settings, source: str, sha: str, name: str, expected_bytes: int | None = None,
           inbox_file: Path | None = None) -> Verdict:
    """Check the landed copy of ``(source, sha, name)`` against its manifest sha256 ``sha``; repair it
    from ``inbox_file`` (default ``<inbox>/<source>/<name>``) when that has the right sha256."""
    uri = landed_uri(settings, source, sha, name)
    found = _hash_uri(uri)
    if found is not None and found[0] == sha:
        return Verdict("ok", uri)
    what = ("is missing" if found is None else
            f"has sha256 {found[0][:16]}… ({found[1]:,} bytes), the manifest {sha[:16]}…"
            + (f" ({expected_bytes:,} bytes)" if expected_bytes is not None else ""))
    inbox_file = inbox_file or Path(settings.inbox) / source / name
    if "://" not in settings.inbox and inbox_file.is_file() and sha256_of(inbox_file) == sha:
        land(inbox_file, uri, sha)
        log.warning("%s/%s: the landed copy %s; repaired from the delivered file %s", source, name, what, inbox_file)
        return Verdict("repaired", uri, f"the landed copy {what}; repaired from {inbox_file}",
                       found[0] if found else "", found[1] if found else -1)
    message = (f"the landed copy {what}, and the delivered file is no longer in {inbox_file.parent} with that "
               f"sha256: the copy is not read; ask the department to deliver {name} again")
    log.error("%s/%s: %s", source, name, message)
    return Verdict("corrupt", uri, message, found[0] if found else "", found[1] if found else -1)


def record_corrupt(settings: Settings, source: str, sha: str, name: str, verdict: Verdict, spark=None) -> None:
    """Write the ``landed_copy_corrupt`` finding of a copy (stage ``landing``, run id
    ``landing-<batch id>``: re-checking replaces it instead of adding a second one)."""
    from lake import contracts as contracts_mod
    from lake.spark import get_spark
    from quality import findings

    spark = spark or get_spark(settings)
    try:
        department = contracts_mod.load(settings.contracts_dir).source(source).department
    except Exception:
        department = ""
    batch_id = f"{source}-{sha[:16]}"
    row = {"run_id": f"landing-{batch_id}", "stage": STAGE, "source": source, "department": department,
           "record_key": None, "field": "_file", "rule": RULE, "severity": "error", "defect_type": DEFECT,
           "message": verdict.message, "value": name, "_file_sha256": sha, "_row": None, "_batch_id": batch_id}
    schema = ", ".join(f"{c} {t}" for c, t in findings.COLUMNS)
    findings.write(settings, spark.createDataFrame([row], schema), run_id=row["run_id"])


def verify_all(settings: Settings, spark=None, source: str | None = None) -> dict:
    """Verify every landed copy listed in the manifest (``lake verify``): counts of ok, repaired and
    corrupt copies, and one line per copy that was not ok. Corrupt copies become findings."""
    out = {"ok": 0, "repaired": 0, "corrupt": 0, "problems": []}
    for r in manifest_rows(settings, source):
        v = verify(settings, r["source"], r["sha256"], r["file_name"], r.get("bytes"))
        out[v.status] += 1
        if v.status != "ok":
            out["problems"].append(f"{r['source']}/{r['file_name']}: {v.message}")
        if v.status == "corrupt":
            record_corrupt(settings, r["source"], r["sha256"], r["file_name"], v, spark)
    return out


# ------------------------------------------------------------------ the inbox: what is new

def already_landed(settings: Settings, items: list) -> tuple[dict[int, str], dict[int, dict]]:
    """For ``(source, file)`` items: the sha256 of every existing file (by index), and the manifest
    row of those already landed (by index), whose landed copies are verified here and repaired from
    the item's file when needed (it has the manifest's sha256). JVM-free (deltalake)."""
    shas: dict[int, str] = {}
    known: dict[int, dict] = {}
    if not items:
        return shas, known
    by_key = {(r["source"], r["sha256"]): r for r in manifest_rows(settings)}
    for i, (source, path) in enumerate(items):
        p = Path(path)
        if not p.is_file():
            continue  # reported by the ingest of that file
        shas[i] = sha = sha256_of(p)
        row = by_key.get((source, sha))
        if row is None:
            continue
        v = verify(settings, source, sha, row["file_name"], row.get("bytes"), inbox_file=p)
        if v.status == "corrupt":  # cannot happen with the right bytes at hand, unless the storage fails
            raise InputError(f"{p.name}: {v.message}")
        known[i] = row
        log.debug("%s: already landed as batch %s (%d rows)", p.name, row["batch_id"], row["rows_read"])
    return shas, known


def inbox_items(settings: Settings, sources: list[str]) -> list[tuple[str, Path]]:
    """``(source, file)`` for every file in ``<inbox>/<source>/`` of ``sources`` (hidden files, such as
    a department's upload in progress, are not files yet)."""
    out = []
    for source in sources:
        folder = Path(settings.inbox) / source
        if folder.is_dir():
            out += [(source, p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return out


def nothing_message(settings: Settings, source: str | None = None) -> str:
    """The one line a command or DAG task says on a quiet day."""
    where = Path(settings.inbox) / source if source else Path(settings.inbox)
    return f"nothing to ingest: the inbox {where} has no new files"


def has_new(results: list[dict]) -> bool:
    """Whether an ingest (a list of ``jobs.landing.ingest`` results) landed anything."""
    return any(not r.get("skipped") for r in results)
