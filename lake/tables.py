"""Is this folder a finished Delta table? Used by every reader and writer of the lake, without a JVM.

A write that is killed during a table's *first* commit leaves a folder that is not yet a table:
data files and perhaps ``_delta_log/`` holding only Delta's temporary commit file
(``.00000000000000000000.json.<uuid>.tmp``) and checksum files. On a local folder Delta never leaves
a partial commit file: its log store (HDFSLogStore) writes the commit to that temporary name and
renames it; on S3 a commit is one PUT, visible whole or not at all. A version-0 commit file that is
not valid JSON can therefore only come from outside Delta (a copy cut short, a disk error): it is
reported as unfinished too, and moved aside (``_delta_log.interrupted-<UTC>``, kept for inspection)
before the next write creates the table, because no reader could ever have read that table.

States (``state(path).kind``):

- ``absent``: no folder, or a folder without ``_delta_log`` and without data files;
- ``unfinished``: a folder with data files but no ``_delta_log``, a ``_delta_log`` without a
  commit file, or whose only commit (version 0) is not valid JSON: the first commit was interrupted;
  ``lake status`` lists it with the command that completes it (``completing_command``), readers
  treat it as absent and the next write of its job creates the table;
- ``table``: at least one commit, the newest one valid JSON (or a checkpoint);
- ``damaged``: a newest commit after version 0 that is not valid JSON (Delta never leaves that; the
  table needs a person: nothing here rewrites it).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone

COMMIT = re.compile(r"^(\d{20})\.json$")
CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(\.\d+\.\d+)?\.parquet$")


@dataclass(frozen=True)
class TableState:
    kind: str       # absent | unfinished | table | damaged
    detail: str = ""
    version: int | None = None  # newest commit version (table)


def _local(path: str) -> str | None:
    if "://" not in path:
        return path
    if path.startswith("file://"):
        return path[len("file://"):]
    return None


def state(path: str, check_newest: bool = False) -> TableState:
    """The state of the Delta table folder at ``path`` (local folders only; for object stores
    ``lake.io.is_table`` asks Spark). A version-0 commit is always parsed (it decides "unfinished");
    a later newest commit only with ``check_newest`` (``lake status``): writers call this often, and
    Delta never leaves a partial commit."""
    local = _local(path)
    if local is None:
        raise ValueError(f"lake.tables.state reads local folders only, not {path}")
    if not os.path.isdir(local):
        return TableState("absent")
    log_dir = os.path.join(local, "_delta_log")
    if not os.path.isdir(log_dir):
        data = [n for n in os.listdir(local) if n.endswith(".parquet") and not n.startswith((".", "_"))]
        if data:
            return TableState("unfinished", f"{len(data)} data file(s) and no _delta_log")
        return TableState("absent")
    names = os.listdir(log_dir)
    commits = sorted(int(m.group(1)) for n in names if (m := COMMIT.match(n)))
    checkpoints = sorted(int(m.group(1)) for n in names if (m := CHECKPOINT.match(n)))
    if not commits and not checkpoints:
        return TableState("unfinished", "_delta_log has no commit")
    if not commits:
        return TableState("table", version=checkpoints[-1])
    newest = commits[-1]
    if newest > 0 and not check_newest:
        return TableState("table", version=newest)
    problem = _invalid_commit(os.path.join(log_dir, f"{newest:020d}.json"))
    if problem is None:
        return TableState("table", version=newest)
    if newest == 0 and not checkpoints:
        return TableState("unfinished", f"its first commit is not valid JSON ({problem})")
    return TableState("damaged", f"commit {newest} is not valid JSON ({problem})", newest)


def _invalid_commit(path: str) -> str | None:
    """None when every line of the commit file is a JSON object; else what is wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return str(e)
    if not data.strip():
        return "empty file"
    lines = data.decode("utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            return f"line {i}: {e.msg}"
        if not isinstance(obj, dict):
            return f"line {i}: not a JSON object"
    return None


def is_finished(path: str) -> bool:
    return state(path).kind == "table"


def prepare_for_write(path: str) -> TableState:
    """Before a write creates or changes the table at ``path``: an unfinished table whose only commit
    is not valid JSON has its ``_delta_log`` moved aside, so Delta can create version 0 (an empty
    ``_delta_log`` or one with only temporary files needs nothing: Delta writes over it). Returns the
    state found. Object-store paths are left alone."""
    local = _local(path)
    if local is None:
        return TableState("table")
    st = state(path)
    if st.kind == "unfinished" and "first commit is not valid JSON" in st.detail:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        os.rename(os.path.join(local, "_delta_log"), os.path.join(local, f"_delta_log.interrupted-{stamp}"))
    return st


# ------------------------------------------------------------------ which job completes a table

def completing_command(zone: str, name: str) -> str:
    """The command (and DAG) whose next run completes ``<zone>/<name>``. One map, kept here until
    the contracts' registry of tables and jobs can answer it."""
    from jobs.orchestration import DOMAINS, IOT_TOPIC_TABLES, SPATIAL_TABLES

    table = f"{zone}.{name}"
    domain_of = {s: d for d, sources in DOMAINS.items() for s in sources}
    if zone in ("raw", "quarantine") and name in domain_of:
        return f"`lake ingest --source {name}` (DAG lake__ingest__{domain_of[name]})"
    if zone in ("raw", "quarantine") or table in ("base.iot_reading", "base.iot_device", *IOT_TOPIC_TABLES) \
            or name.startswith("iot_reading"):
        return "`lake run` (DAG lake__iot__daily)"
    if table == "landing._manifest":
        return "`lake ingest` or `lake run` (DAGs lake__ingest__*)"
    if table in SPATIAL_TABLES or name in ("address_links", "address_match"):
        return "`lake run` (DAG lake__build__spatial)"
    if table in ("quality.findings", "quality.validations"):
        return "`lake run` (every DAG that ingests or builds)"
    if zone in ("base", "topic") or name in ("conflicts", "record_links", "review_pairs"):
        return "`lake build` (DAGs lake__build__base, lake__build__topic)"
    if name in ("department_quality", "department_scores"):
        return "`lake run` (DAG lake__report)"
    if zone in ("share", "catalog"):
        return "`lake publish` (DAG lake__publish)"
    return "`lake run`"
