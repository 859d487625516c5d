"""Where the sharing service keeps its state, and the only place it writes it (through ``lake.ledger``).

- ``share/_requests``: every request and decision, one row per event (applied, approved, rejected,
  revoked); the grants are the approved requests that are neither revoked nor expired;
- ``_private/sharing/tokens``: bearer tokens, hashed (sha256), one row per event (issued, revoked);
- ``_private/sharing/audit``: every read through the server or the CLI, granted or refused;
- ``_private/sharing/signing.key``: the key that signs the file URLs the server hands out.
All three tables are append-only Delta tables (``delta.appendOnly``). ``_private/`` is never served:
the server only serves the data files of the views a grant points to."""
from __future__ import annotations

import os
import secrets

import pyarrow as pa

from lake import io, ledger
from lake.settings import Settings

TS = pa.timestamp("us", tz="UTC")

REQUESTS = ("share", "_requests")
REQUESTS_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("event", pa.string()), ("at", TS), ("actor", pa.string()),
    ("department_code", pa.string()), ("table", pa.string()), ("columns", pa.list_(pa.string())),
    ("clear_columns", pa.list_(pa.string())), ("row_filter", pa.string()), ("purpose", pa.string()),
    ("legal_basis", pa.string()), ("days", pa.int32()), ("expires_at", TS), ("note", pa.string()),
])

TOKENS = ("_private", "sharing", "tokens")
TOKENS_SCHEMA = pa.schema([
    ("token_id", pa.string()), ("event", pa.string()), ("at", TS), ("department_code", pa.string()),
    ("token_sha256", pa.string()), ("expires_at", TS), ("note", pa.string()),
])

AUDIT = ("_private", "sharing", "audit")
AUDIT_SCHEMA = pa.schema([
    ("at", TS), ("channel", pa.string()), ("action", pa.string()), ("department_code", pa.string()),
    ("token_id", pa.string()), ("resource", pa.string()), ("columns", pa.list_(pa.string())),
    ("rows", pa.int64()), ("purpose", pa.string()), ("decision", pa.string()), ("reason", pa.string()),
    ("status", pa.int32()), ("client", pa.string()), ("request", pa.string()),
])

KEY = ("_private", "sharing", "signing.key")


def uri(settings: Settings, parts: tuple) -> str:
    return settings.path(*parts)


def append(settings: Settings, table: tuple, rows: list[dict]) -> None:
    schema = {REQUESTS: REQUESTS_SCHEMA, TOKENS: TOKENS_SCHEMA, AUDIT: AUDIT_SCHEMA}[table]
    ledger.append(uri(settings, table), [{k: r.get(k) for k in schema.names} for r in rows], schema)


def read(settings: Settings, table: tuple) -> list[dict]:
    return ledger.read(uri(settings, table))


def signing_key(settings: Settings) -> bytes:
    """The server's URL-signing key, created on first use (32 random bytes; never in git: it lives in
    the lake root's private area, readable by the owner only)."""
    u = uri(settings, KEY)
    if io.file_exists(u):
        return bytes.fromhex(io.read_bytes(u).decode().strip())
    key = secrets.token_bytes(32)
    if "://" not in u:
        os.makedirs(os.path.dirname(u), exist_ok=True)
        try:
            fd = os.open(u, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return bytes.fromhex(io.read_bytes(u).decode().strip())
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
    else:
        io.write_bytes(u, key.hex().encode())
    return key
