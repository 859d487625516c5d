"""目录链: the catalogue's history as an append-only hash chain (``catalog/chain``).

Every change of a catalogue entry's registered fields (an entry added or removed, a field, a grant or a
grade changed) is one block: its index, time, kind (``added``, ``field``, ``grant``, ``grade``,
``removed``), the resource, the fields that changed, the entry's whole registered content after the
change and the sha256 of that content, and ``hash`` = sha256 of all of these plus the previous block's
hash. Block 0 is the genesis block. A resource's code is assigned in its ``added`` block (the next free
number of its provider and kind) and never changes or is reused: adding a table does not renumber the
others.

``verify`` recomputes every block's content hash and hash and the links between them, then checks that
the current catalogue (``catalog/resources.json`` and the Delta table ``catalog/resources``) is exactly
the content of each resource's last block: a block edited in storage, a block removed, or an entry of
the catalogue edited without a block are all named. Volatile status (gate result, quality score,
freshness, version) is not chained: it changes at every publication and is not registration.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pyarrow as pa

from lake import ledger
from lake.settings import Settings

CHAIN = ("catalog", "chain")
ZERO = "0" * 64
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    ("index", pa.int64()), ("at", TS), ("kind", pa.string()), ("resource_id", pa.string()),
    ("resource_code", pa.string()), ("fields", pa.list_(pa.string())), ("content", pa.string()),
    ("content_hash", pa.string()), ("prev_hash", pa.string()), ("hash", pa.string()),
])


def canonical(entry: dict | None) -> str:
    return "" if entry is None else json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def block_hash(b: dict) -> str:
    at = b["at"]
    at = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(at, datetime) else str(at)
    doc = {"index": b["index"], "at": at, "kind": b["kind"], "resource_id": b["resource_id"],
           "resource_code": b["resource_code"], "fields": list(b["fields"] or []), "content_hash": b["content_hash"],
           "prev_hash": b["prev_hash"]}
    return sha(canonical(doc))


def blocks(settings: Settings) -> list[dict]:
    return sorted(ledger.read(settings.path(*CHAIN)), key=lambda b: b["index"])


def heads(chain: list[dict]) -> dict[str, dict]:
    """resource id -> its last block (resources whose last block is ``removed`` are left out)."""
    out: dict[str, dict] = {}
    for b in chain:
        if b["kind"] == "genesis":
            continue
        if b["kind"] == "removed":
            out.pop(b["resource_id"], None)
        else:
            out[b["resource_id"]] = b
    return out


def codes(chain: list[dict]) -> dict[str, str]:
    """resource id -> code, for every resource ever registered (codes are never reused)."""
    return {b["resource_id"]: b["resource_code"] for b in chain if b["kind"] == "added"}


def next_code(prefix: str, taken: set[str]) -> str:
    """``<prefix><4 digits>``: one more than the highest number ever used under ``prefix``."""
    nums = [int(c[len(prefix):]) for c in taken if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return f"{prefix}{(max(nums) if nums else 0) + 1:04d}"


def _kind(fields: list[str]) -> str:
    if "grants" in fields:
        return "grant"
    if fields and all(f in ("grade", "items") for f in fields):
        return "grade"
    return "field"


def changed_fields(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if canonical(old.get(k)) != canonical(new.get(k)))


def record(settings: Settings, entries: dict[str, dict], now: datetime | None = None) -> list[dict]:
    """Append one block per resource whose registered content differs from its last block (and one per
    resource no longer in ``entries``); returns the blocks appended. ``entries``: resource id -> the
    registered content, ``resource_code`` included."""
    with ledger.lock(settings.path(*CHAIN)):  # the blocks appended link to the last block read (across processes)
        return _record(settings, entries, now or datetime.now(timezone.utc))


def _record(settings: Settings, entries: dict[str, dict], now: datetime) -> list[dict]:
    chain = blocks(settings)
    new_blocks = []
    if not chain:
        g = {"index": 0, "at": now, "kind": "genesis", "resource_id": "", "resource_code": "", "fields": [],
             "content": "", "content_hash": sha(""), "prev_hash": ZERO}
        g["hash"] = block_hash(g)
        new_blocks.append(g)
    prev = (new_blocks or chain)[-1]
    current = heads(chain)
    todo = []
    for rid in sorted(entries):
        e = entries[rid]
        head = current.get(rid)
        if head is None:
            todo.append(("added", rid, e, sorted(e)))
        else:
            old = json.loads(head["content"])
            fields = changed_fields(old, e)
            if fields:
                todo.append((_kind(fields), rid, e, fields))
    for rid in sorted(set(current) - set(entries)):
        todo.append(("removed", rid, None, []))
    for kind, rid, e, fields in todo:
        content = canonical(e)
        b = {"index": prev["index"] + 1, "at": now, "kind": kind, "resource_id": rid,
             "resource_code": e["resource_code"] if e else current[rid]["resource_code"], "fields": fields,
             "content": content, "content_hash": sha(content), "prev_hash": prev["hash"]}
        b["hash"] = block_hash(b)
        new_blocks.append(b)
        prev = b
    ledger.append(settings.path(*CHAIN), new_blocks, SCHEMA)
    return new_blocks


def verify_blocks(chain: list[dict]) -> str | None:
    """The first problem of the chain itself, or None."""
    prev_hash = ZERO
    for i, b in enumerate(chain):
        if b["index"] < i:
            return f"block {b['index']} appears twice: two writers appended to the chain at once, or a block was copied"
        if b["index"] != i:
            return f"block {i} is missing (found block {b['index']} in its place): blocks were removed"
        if b["content_hash"] != sha(b["content"] or ""):
            return (f"block {i} ({b['kind']} {b['resource_code'] or 'genesis'}): its content does not match its "
                    "content hash: the stored block was altered")
        if b["prev_hash"] != prev_hash:
            return f"block {i} ({b['kind']} {b['resource_code']}): does not link to block {i - 1} (prev_hash differs)"
        if b["hash"] != block_hash(b):
            return f"block {i} ({b['kind']} {b['resource_code'] or 'genesis'}): its hash does not match its fields: " \
                   "the stored block was altered"
        prev_hash = b["hash"]
    if chain and chain[0]["kind"] != "genesis":
        return "block 0 is not the genesis block"
    return None


def verify_catalogue(chain: list[dict], catalogue: dict[str, dict], where: str) -> str | None:
    """The first entry of ``catalogue`` (resource id -> registered content) that is not exactly the
    content of its resource's last block, or None."""
    current = heads(chain)
    for rid in sorted(set(current) | set(catalogue)):
        if rid not in catalogue:
            return f"{where}: {current[rid]['resource_code']} ({rid}) is missing, but block {current[rid]['index']} " \
                   "registers it"
        if rid not in current:
            return f"{where}: {rid} ({catalogue[rid].get('resource_code')}) is in the catalogue but in no block of the chain"
        if sha(canonical(catalogue[rid])) != current[rid]["content_hash"]:
            old = json.loads(current[rid]["content"])
            fields = changed_fields(old, catalogue[rid])
            return (f"{where}: {current[rid]['resource_code']} ({rid}) differs from block {current[rid]['index']} "
                    f"in {', '.join(fields) or 'its content'}: the catalogue was changed outside the chain")
    return None


def history(chain: list[dict], code: str) -> list[dict]:
    """The blocks of one resource (by code or resource id), each with the changed fields' old and new values."""
    out, last = [], {}
    for b in chain:
        if code not in (b["resource_code"], b["resource_id"]) or b["kind"] == "genesis":
            continue
        new = json.loads(b["content"]) if b["content"] else {}
        changes = {f: {"from": last.get(f), "to": new.get(f)} for f in (b["fields"] or [])} if b["kind"] != "added" else {}
        out.append({"index": b["index"], "at": b["at"].isoformat(), "kind": b["kind"], "resource_code": b["resource_code"],
                    "resource_id": b["resource_id"], "fields": list(b["fields"] or []), "changes": changes,
                    "hash": b["hash"], "prev_hash": b["prev_hash"]})
        last = new
    return out
