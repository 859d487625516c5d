"""Directed opening (有条件开放) and the sandbox's permissions: applications, approvals, download tokens
and the audit of every use, in one place.

A dataset with ``open_type: directed`` is described on the portal but its files are not offered; a
table with ``sandbox:`` in its contract can be queried in the sandbox (``opendata.sandbox``) but never
downloaded. Either is reached through an application:

1. ``apply``: an applicant (an organisation or a person, named as the agreement is signed) asks for a
   resource (a directed dataset's id, or ``sandbox:<table>``) for a purpose and accepts its data-use
   agreement (the contract's ``open_dataset.agreement``, else ``STANDARD_AGREEMENT``); the agreement's
   sha256 is recorded with the application;
2. ``approve`` (or ``reject``) by the bureau, for a number of days: a download application gets a
   token, shown once and stored only as its sha256 with its expiry; a sandbox application is a grant
   for those days;
3. ``download`` (``lake open download --token T --out DIR``) copies the dataset's files to DIR if the
   token is known, not expired, not revoked and its application still approved; ``revoke`` ends a token
   or an application at once.

Every application event, token event and use (a download, a sandbox query), granted or refused, is
a row of an append-only Delta table under ``<root>/_private/opendata/`` (written without a JVM by
deltalake; ``delta.appendOnly``): ``requests``, ``tokens`` and ``audit``. An audit row has the shape
of the share zone's audit (who, resource, columns, rows, purpose, decision, reason, at; plus channel,
action, token id, the request such as the SQL, and the result's sha256), so both can be read as one
table. Tokens are never stored or audited in clear."""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from lake import contracts as contracts_mod
from lake import io
from lake.settings import Settings
from opendata.contract import OpenDataError

TS = pa.timestamp("us", tz="UTC")
PRIVATE = ("_private", "opendata")
REQUESTS = (*PRIVATE, "requests")
TOKENS = (*PRIVATE, "tokens")
AUDIT = (*PRIVATE, "audit")
SCHEMAS = {
    REQUESTS: pa.schema([
        ("request_id", pa.string()), ("event", pa.string()), ("at", TS), ("actor", pa.string()),
        ("applicant", pa.string()), ("kind", pa.string()), ("resource", pa.string()), ("columns", pa.list_(pa.string())),
        ("purpose", pa.string()), ("agreement_sha256", pa.string()), ("days", pa.int32()), ("expires_at", TS),
        ("note", pa.string()),
    ]),
    TOKENS: pa.schema([
        ("token_id", pa.string()), ("event", pa.string()), ("at", TS), ("applicant", pa.string()),
        ("request_id", pa.string()), ("resource", pa.string()), ("token_sha256", pa.string()), ("expires_at", TS),
        ("note", pa.string()),
    ]),
    AUDIT: pa.schema([
        ("at", TS), ("channel", pa.string()), ("action", pa.string()), ("applicant", pa.string()),
        ("token_id", pa.string()), ("resource", pa.string()), ("columns", pa.list_(pa.string())), ("rows", pa.int64()),
        ("purpose", pa.string()), ("decision", pa.string()), ("reason", pa.string()), ("request", pa.string()),
        ("result_sha256", pa.string()),
    ]),
}
DEFAULT_DAYS = 30
MAX_DAYS = 366
SANDBOX_PREFIX = "sandbox:"
STANDARD_AGREEMENT = (
    "数据使用协议：1. 仅用于申请书所述目的；2. 不得尝试识别任何个人，不得将数据与其他数据关联以识别个人；"
    "3. 不得向第三方提供数据或其副本；4. 发表成果时仅使用汇总结果，每个统计单元不少于5人；5. 期满或目的达成后删除数据；"
    "6. 北京市大兴区大数据局记录每次使用并可随时撤销授权。")
_LOCK = threading.Lock()


class AccessError(OpenDataError):
    """An application, approval, download or query is not allowed; the message says why (one line)."""


# ----------------------------------------------------------------------------------- storage

def _append(settings: Settings, table: tuple, rows: list[dict]) -> None:
    schema = SCHEMAS[table]
    data = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    with _LOCK:
        io.write_delta_rs(settings.path(*table), data, mode="append", configuration={"delta.appendOnly": "true"})


def _read(settings: Settings, table: tuple) -> list[dict]:
    if not io.has_commit(settings.path(*table)):
        return []
    return io.delta_table(settings.path(*table)).to_pyarrow_table().to_pylist()


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


def audit(settings: Settings, *, action: str, decision: str, applicant: str = "", resource: str = "",
          columns: list[str] | None = None, rows: int | None = None, purpose: str = "", reason: str = "",
          token_id: str = "", request: str = "", result_sha256: str = "", now: datetime | None = None) -> dict:
    rec = {"at": _now(now), "channel": "cli", "action": action, "applicant": applicant, "token_id": token_id,
           "resource": resource, "columns": list(columns) if columns is not None else None, "rows": rows,
           "purpose": purpose, "decision": decision, "reason": reason, "request": request, "result_sha256": result_sha256}
    _append(settings, AUDIT, [rec])
    return rec


def audit_records(settings: Settings, applicant: str | None = None, resource: str | None = None,
                  decision: str | None = None, action: str | None = None) -> list[dict]:
    out = []
    for r in sorted(_read(settings, AUDIT), key=lambda r: r["at"]):
        if (applicant and r["applicant"] != applicant) or (resource and r["resource"] != resource) or \
                (decision and r["decision"] != decision) or (action and r["action"] != action):
            continue
        out.append(r)
    return out


# ----------------------------------------------------------------------------------- resources

def resource_of(settings: Settings, resource: str) -> dict:
    """What an application can be for: a directed dataset (``kind`` download) or ``sandbox:<table>``."""
    contracts = contracts_mod.load(settings.contracts_dir)
    if resource.startswith(SANDBOX_PREFIX):
        table = resource[len(SANDBOX_PREFIX):]
        tc = contracts.tables.get(table)
        if tc is None or not tc.sandbox:
            known = sorted(SANDBOX_PREFIX + t.table for t in contracts.tables.values() if t.sandbox)
            raise AccessError(f"'{resource}' is not in the sandbox; sandbox tables: {', '.join(known) or 'none'}")
        cols = [c.name for c in tc.columns if not c.pii]
        return {"kind": "sandbox", "resource": resource, "table": tc.table, "columns": cols,
                "agreement": STANDARD_AGREEMENT, "k": tc.sandbox["k"], "title": tc.title}
    by_id = {t.open_dataset["id"]: t for t in contracts.tables.values() if t.open_dataset.get("id")}
    tc = by_id.get(resource)
    if tc is None or tc.open_type == "none":
        directed = sorted(i for i, t in by_id.items() if t.open_type == "directed")
        raise AccessError(f"'{resource}' is not an open dataset; datasets under directed opening: "
                          f"{', '.join(directed) or 'none'}; sandbox tables are named sandbox:<table>")
    if tc.open_type != "directed":
        raise AccessError(f"'{resource}' is open to everyone (open_type {tc.open_type}): download it from the portal, "
                          "no application is needed")
    return {"kind": "download", "resource": resource, "table": tc.table, "columns": None,
            "agreement": tc.open_dataset.get("agreement") or STANDARD_AGREEMENT, "title": tc.open_dataset["title"]}


def agreement_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------- applications

def applications(settings: Settings, now: datetime | None = None) -> list[dict]:
    """One row per application with its current state (pending, approved, rejected, revoked, expired)."""
    now = _now(now)
    out: dict[str, dict] = {}
    for e in sorted(_read(settings, REQUESTS), key=lambda r: (r["at"], r["event"] != "applied")):
        rid = e["request_id"]
        if e["event"] == "applied":
            out[rid] = {**e, "state": "pending", "approved_by": "", "expires_at": None}
        elif rid in out:
            a = out[rid]
            if e["event"] == "approved" and a["state"] == "pending":
                a.update(state="approved", approved_by=e["actor"], expires_at=e["expires_at"], days=e["days"])
            elif e["event"] == "rejected" and a["state"] == "pending":
                a.update(state="rejected", note=e["note"])
            elif e["event"] == "revoked":
                a.update(state="revoked", note=e["note"])
    for a in out.values():
        if a["state"] == "approved" and a["expires_at"] is not None and a["expires_at"] <= now:
            a["state"] = "expired"
    return sorted(out.values(), key=lambda a: a["at"])


def application(settings: Settings, request_id: str, now: datetime | None = None) -> dict:
    for a in applications(settings, now):
        if a["request_id"] == request_id:
            return a
    raise AccessError(f"no application '{request_id}' (lake open applications lists them)")


def apply(settings: Settings, applicant: str, resource: str, purpose: str, accept_agreement: bool,
          columns: list[str] | None = None, now: datetime | None = None) -> dict:
    """Record an application; refused (and audited) without a purpose or the agreement accepted."""
    applicant, purpose = applicant.strip(), purpose.strip()
    if not applicant:
        raise AccessError("an application names its applicant (--as)")
    r = resource_of(settings, resource)

    def refuse(reason: str):
        audit(settings, action="apply", decision="refused", applicant=applicant, resource=resource, purpose=purpose,
              columns=columns, reason=reason, now=now)
        raise AccessError(reason)

    if len(purpose) < 4:
        refuse("an application states its purpose (--purpose), what the data will be used for")
    if not accept_agreement:
        refuse(f"the data-use agreement of '{resource}' must be accepted (--accept-agreement): {r['agreement']}")
    if columns:
        if r["kind"] != "sandbox":
            refuse("columns are chosen for sandbox applications; a directed dataset is downloaded whole")
        bad = [c for c in columns if c not in r["columns"]]
        if bad:
            refuse(f"column(s) {bad} of {r['table']} are not available in the sandbox (personal columns never are); "
                   f"available: {', '.join(r['columns'])}")
    rid = "A" + secrets.token_hex(6)
    rec = {"request_id": rid, "event": "applied", "at": _now(now), "actor": applicant, "applicant": applicant,
           "kind": r["kind"], "resource": resource, "columns": list(columns or r["columns"] or []) or None,
           "purpose": purpose, "agreement_sha256": agreement_sha256(r["agreement"])}
    _append(settings, REQUESTS, [rec])
    audit(settings, action="apply", decision="recorded", applicant=applicant, resource=resource, purpose=purpose,
          columns=rec["columns"], reason=f"application {rid}", now=now)
    return rec


def approve(settings: Settings, request_id: str, by: str, days: int = DEFAULT_DAYS,
            now: datetime | None = None) -> dict:
    """Approve a pending application for ``days``; the applicant gets a token (returned in clear this
    once, stored as its sha256): a download token, or the credential its sandbox queries present."""
    if not by.strip():
        raise AccessError("an approval names who approves (--by)")
    if not 1 <= days <= MAX_DAYS:
        raise AccessError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    a = application(settings, request_id, now)
    if a["state"] != "pending":
        raise AccessError(f"application {request_id} is {a['state']}, not pending")
    at = _now(now)
    expires = at + timedelta(days=days)
    _append(settings, REQUESTS, [{"request_id": request_id, "event": "approved", "at": at, "actor": by,
                                  "applicant": a["applicant"], "kind": a["kind"], "resource": a["resource"],
                                  "days": days, "expires_at": expires}])
    out = {"request_id": request_id, "applicant": a["applicant"], "resource": a["resource"], "kind": a["kind"],
           "expires_at": expires}
    if a["kind"] in ("download", "sandbox"):
        token = secrets.token_urlsafe(32)
        token_id = "T" + secrets.token_hex(6)
        _append(settings, TOKENS, [{"token_id": token_id, "event": "issued", "at": at, "applicant": a["applicant"],
                                    "request_id": request_id, "resource": a["resource"],
                                    "token_sha256": hashlib.sha256(token.encode()).hexdigest(), "expires_at": expires}])
        out.update(token=token, token_id=token_id)
    audit(settings, action="approve", decision="granted", applicant=a["applicant"], resource=a["resource"],
          purpose=a["purpose"], columns=a["columns"], token_id=out.get("token_id", ""),
          reason=f"application {request_id} approved by {by} until {expires:%Y-%m-%d %H:%M} UTC", now=now)
    return out


def reject(settings: Settings, request_id: str, by: str, reason: str, now: datetime | None = None) -> None:
    a = application(settings, request_id, now)
    if a["state"] != "pending":
        raise AccessError(f"application {request_id} is {a['state']}, not pending")
    _append(settings, REQUESTS, [{"request_id": request_id, "event": "rejected", "at": _now(now), "actor": by,
                                  "applicant": a["applicant"], "kind": a["kind"], "resource": a["resource"], "note": reason}])
    audit(settings, action="approve", decision="refused", applicant=a["applicant"], resource=a["resource"],
          purpose=a["purpose"], reason=f"application {request_id} rejected by {by}: {reason}", now=now)


def revoke(settings: Settings, ident: str, by: str, reason: str = "", now: datetime | None = None) -> str:
    """Revoke an application (``A…``: its grant and every token of it) or one token (``T…``)."""
    at = _now(now)
    if ident.startswith("T"):
        tok = [t for t in _read(settings, TOKENS) if t["token_id"] == ident and t["event"] == "issued"]
        if not tok:
            raise AccessError(f"no token '{ident}'")
        t = tok[0]
        _append(settings, TOKENS, [{**t, "event": "revoked", "at": at, "note": reason, "token_sha256": None}])
        audit(settings, action="revoke", decision="recorded", applicant=t["applicant"], resource=t["resource"],
              token_id=ident, reason=f"token revoked by {by}: {reason}", now=now)
        return f"token {ident} revoked"
    a = application(settings, ident, now)
    _append(settings, REQUESTS, [{"request_id": ident, "event": "revoked", "at": at, "actor": by,
                                  "applicant": a["applicant"], "kind": a["kind"], "resource": a["resource"], "note": reason}])
    audit(settings, action="revoke", decision="recorded", applicant=a["applicant"], resource=a["resource"],
          reason=f"application {ident} revoked by {by}: {reason}", now=now)
    return f"application {ident} revoked"


def _token(settings: Settings, token: str) -> tuple[dict | None, bool]:
    """(the issued token row, revoked?) for a token in clear."""
    h = hashlib.sha256(token.encode()).hexdigest()
    rows = _read(settings, TOKENS)
    issued = next((t for t in rows if t["event"] == "issued" and t["token_sha256"] == h), None)
    if issued is None:
        return None, False
    return issued, any(t["event"] == "revoked" and t["token_id"] == issued["token_id"] for t in rows)


def download(settings: Settings, token: str, out_dir: str | Path, now: datetime | None = None) -> dict:
    """Copy a directed dataset's files (data files, metadata.json, dcat.*) into ``out_dir``."""
    at = _now(now)
    t, revoked = _token(settings, token.strip())
    a = None
    reason = ""
    if t is None:
        reason = "unknown token"
    elif revoked:
        reason = f"token {t['token_id']} was revoked"
    elif t["expires_at"] <= at:
        reason = f"token {t['token_id']} expired on {t['expires_at']:%Y-%m-%d %H:%M} UTC"
    else:
        a = application(settings, t["request_id"], now)
        if a["state"] != "approved":
            reason = f"application {t['request_id']} is {a['state']}"
        elif a["kind"] != "download":
            reason = f"token {t['token_id']} is for the sandbox of {a['resource'][len(SANDBOX_PREFIX):]}, not a download"
    resource = t["resource"] if t else ""
    if reason:
        audit(settings, action="download", decision="refused", applicant=t["applicant"] if t else "",
              resource=resource, token_id=t["token_id"] if t else "", reason=reason, now=now)
        raise AccessError(f"download refused: {reason}")
    folder = settings.path("open", resource)
    meta_uri = f"{folder}/metadata.json"
    if not io.file_exists(meta_uri):
        reason = f"open/{resource} is not published yet"
        audit(settings, action="download", decision="refused", applicant=t["applicant"], resource=resource,
              token_id=t["token_id"], purpose=a["purpose"], reason=reason, now=now)
        raise AccessError(f"download refused: {reason}")
    meta = json.loads(io.read_bytes(meta_uri))
    names = [d["file"] for d in meta.get("distributions", [])] + ["metadata.json", "dcat.ttl", "dcat.jsonld"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, digest = [], hashlib.sha256()
    for n in names:
        uri = f"{folder}/{n}"
        if io.file_exists(uri):
            data = io.read_bytes(uri)
            (out / n).write_bytes(data)
            digest.update(n.encode() + b"\0" + data)
            written.append(n)
    rows = io.read_bytes(f"{folder}/data.csv").count(b"\n") - 1 if "data.csv" in written else None
    cols = [c["name"] for c in meta.get("columns", [])]
    audit(settings, action="download", decision="granted", applicant=t["applicant"], resource=resource,
          token_id=t["token_id"], columns=cols, rows=rows, purpose=a["purpose"],
          reason=f"application {a['request_id']}, token valid until {t['expires_at']:%Y-%m-%d}",
          result_sha256=digest.hexdigest(), now=now)
    return {"dataset": resource, "files": written, "rows": rows, "out": str(out)}


def sandbox_grant(settings: Settings, applicant: str, table: str, token: str | None,
                  now: datetime | None = None) -> dict:
    """The applicant's approved, unexpired sandbox application for ``table``, proven by the token its
    approval issued (a name alone proves nothing); AccessError otherwise."""
    resource = SANDBOX_PREFIX + table
    mine = [a for a in applications(settings, now) if a["applicant"] == applicant and a["resource"] == resource]
    ok = [a for a in mine if a["state"] == "approved"]
    if ok:
        if not (token or "").strip():
            raise AccessError(f"a sandbox query presents the token issued when the application was approved "
                              f"(--token or LAKE_SANDBOX_TOKEN); none was given for {applicant}")
        t, revoked = _token(settings, token.strip())
        ids = {a["request_id"] for a in ok}
        if t is None or t["request_id"] not in ids:
            raise AccessError(f"the token is not one issued to {applicant} for the sandbox of {table}")
        if revoked:
            raise AccessError(f"token {t['token_id']} was revoked")
        if t["expires_at"] is not None and _now(now) >= t["expires_at"]:
            raise AccessError(f"token {t['token_id']} expired on {t['expires_at']:%Y-%m-%d %H:%M} UTC")
        return {**next(a for a in ok if a["request_id"] == t["request_id"]), "token_id": t["token_id"]}
    state = f" (your application is {mine[-1]['state']})" if mine else ""
    raise AccessError(f"{applicant} holds no approved sandbox application for {table}{state}; apply with "
                      f"`lake open apply --as {applicant} --resource {resource} --purpose ... --accept-agreement`")
