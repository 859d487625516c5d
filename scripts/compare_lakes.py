"""Compare two lakes table by table and file by file, without a JVM: the proof that a change of the
code (a restructuring, a new execution engine, a cluster) leaves what the lake holds unchanged.

For every Delta table under either root (``<zone>/<name>``, read with deltalake): present in both,
the same columns, the same number of rows and the same content, compared as an order-independent
digest of the rows (each row as sorted JSON, hashed, summed). Columns that carry a run's wall clock
or the root's own path are left out of the digest (``VOLATILE``); so are identifiers that hash the
inputs of a run, which include the contracts and the code (``--ignore-columns`` adds more). For the
open zone every file is compared byte for byte.

    .venv/bin/python scripts/compare_lakes.py /tmp/lake-before /tmp/lake-after
    .venv/bin/python scripts/compare_lakes.py A B --ignore-columns run_id,inputs --ignore-tables catalog/resources
    .venv/bin/python scripts/compare_lakes.py /tmp/lake-local s3a://lake/lake   # with LAKE_S3_* exported

Either root may be a folder or an s3a:// URI (reached with the LAKE_S3_* settings, through lake.io).

Prints one line per table (same / DIFFERENT with what differs) and exits 1 when anything differs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

ZONES = ("landing", "raw", "quarantine", "base", "topic", "share", "quality", "catalog")
# a run's wall clock and the lake's own location: never equal between two runs
VOLATILE = {"_ingested_at", "ingested_at", "landing_path"}
# the same, in one table only: the catalogue's last commit time of each resource, and the chain's block
# time with the hashes that cover it (each block's content_hash is still compared)
VOLATILE_IN = {"catalog/resources": {"last_updated"}, "catalog/chain": {"at", "hash", "prev_hash"}}


def _root(root: str) -> str:
    return root if "://" in root else str(Path(root).resolve())


def tables(root: str) -> dict[str, str]:
    from lake.catalog_view import table_paths
    from lake.settings import Settings

    return table_paths(Settings.from_env(root=_root(str(root))))


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, float) and v != v:
        return "NaN"
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def digest(path: str, ignore: set[str]) -> tuple[int, list[str], str]:
    """(rows, columns compared, order-independent digest of the rows)."""
    from lake import io

    t = io.delta_table(str(path)).to_pyarrow_table()
    cols = sorted(c for c in t.column_names if c not in ignore)
    total = 0
    for row in t.select(cols).to_pylist():
        blob = json.dumps(_plain(row), sort_keys=True, ensure_ascii=False).encode()
        total = (total + int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")) % (1 << 64)
    return t.num_rows, cols, f"{total:016x}"


def open_files(root: str) -> dict[str, bytes]:
    import pyarrow.fs as pafs

    from lake import io

    fs, folder = io.filesystem(f"{_root(str(root)).rstrip('/')}/open")
    info = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=True))
    out = {}
    for i in sorted(info, key=lambda i: i.path):
        if i.type == pafs.FileType.File:
            with fs.open_input_stream(i.path) as f:
                out[i.path[len(folder):].lstrip("/")] = f.read()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="a lake root: a folder or s3a://bucket/prefix")
    ap.add_argument("b")
    ap.add_argument("--ignore-columns", default="", help="more columns to leave out of every digest (comma-separated)")
    ap.add_argument("--ignore-tables", default="", help="tables (zone/name) known to differ, reported but not failed")
    args = ap.parse_args(argv)
    for r in (args.a, args.b):
        if "://" not in r and not Path(r).is_dir():
            print(f"error: {r} is not a folder", file=sys.stderr)
            return 2
    ignore = VOLATILE | {c for c in args.ignore_columns.split(",") if c}
    known = {t for t in args.ignore_tables.split(",") if t}
    ta, tb = tables(args.a), tables(args.b)
    bad = 0
    print(f"left out of every digest: {', '.join(sorted(ignore))}; and of "
          + "; ".join(f"{t}: {', '.join(sorted(c))}" for t, c in VOLATILE_IN.items()))
    for name in sorted(set(ta) | set(tb)):
        if name not in ta or name not in tb:
            print(f"{name:45s} only in {'A' if name in ta else 'B'}")
            bad += name not in known
            continue
        left_out = ignore | VOLATILE_IN.get(name, set())
        (na, ca, da), (nb, cb, db) = digest(ta[name], left_out), digest(tb[name], left_out)
        if (na, ca, da) == (nb, cb, db):
            print(f"{name:45s} same ({na:,} rows)")
            continue
        what = []
        if ca != cb:
            what.append(f"columns {sorted(set(ca) ^ set(cb))}")
        if na != nb:
            what.append(f"rows {na:,} vs {nb:,}")
        if not what:
            what.append("content")
        print(f"{name:45s} DIFFERENT: {'; '.join(what)}" + (" (known)" if name in known else ""))
        bad += name not in known
    fa, fb = open_files(args.a), open_files(args.b)
    for f in sorted(set(fa) | set(fb)):
        if fa.get(f) != fb.get(f):
            print(f"open/{f:40s} DIFFERENT" if f in fa and f in fb else f"open/{f:40s} only in {'A' if f in fa else 'B'}")
            bad += 1
    print(f"{len(set(ta) | set(tb))} tables, {len(set(fa) | set(fb))} open files: "
          + ("all the same" if not bad else f"{bad} difference(s)"))
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("RUST_LOG", "error")
    sys.exit(main())
