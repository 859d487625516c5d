"""Append-only Delta tables written without a JVM (delta-rs): the catalogue chain (``catalog/chain``),
the sharing requests (``share/_requests``), the bearer tokens and the read audit (``_private/sharing/``).

Every write to these tables goes through ``append`` here, so that one lock (a cross-process lock, when
the lake gets one) can wrap them all. The tables are created with ``delta.appendOnly = true``: a Delta
writer (delta-rs or Spark) refuses to overwrite or delete their rows; history is only ever added to.
Appends never conflict with each other: two processes appending at once both succeed (delta-rs retries
the commit under the next version number)."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pyarrow as pa

_LOCK = threading.RLock()  # one writer at a time inside a process (the server's threads, the CLI)


@contextmanager
def lock(uri: str | None = None):
    """Held around a read-then-append that must not interleave with another writer (the chain: a block
    links to the last one read): this process's lock, and with ``uri`` the table's lease across
    processes (``lake.locks``), so two processes recording catalogue changes take turns."""
    with _LOCK:
        if uri is None:
            yield
            return
        from lake import locks

        with locks.table_lock(uri):
            yield


def exists(uri: str) -> bool:
    from lake.io import has_commit

    return has_commit(uri)


def append(uri: str, rows: list[dict], schema: pa.Schema) -> None:
    """Append ``rows`` (dicts with the keys of ``schema``) to the append-only table at ``uri``,
    creating it on first use."""
    from lake.io import write_delta_rs

    if not rows:
        return
    table = pa.Table.from_pylist(rows, schema=schema)
    with _LOCK:
        write_delta_rs(uri, table, mode="append", configuration={"delta.appendOnly": "true"})


def read(uri: str) -> list[dict]:
    """Every row of the table at ``uri`` (``[]`` when it does not exist yet); callers order them by
    their own time or index column."""
    if not exists(uri):
        return []
    from lake.io import delta_table

    return delta_table(uri).to_pyarrow_table().to_pylist()


def read_arrow(uri: str) -> pa.Table | None:
    if not exists(uri):
        return None
    from lake.io import delta_table

    return delta_table(uri).to_pyarrow_table()
