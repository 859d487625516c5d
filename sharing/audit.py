"""The audit of every read (审计): who, which resource and columns, how many rows, for what purpose, the
decision and its reason, when; from the server (``channel`` http) and the CLI (``channel`` cli).

Written only here, appended to ``_private/sharing/audit`` (append-only Delta, outside anything the
server serves): no department has a path to read or change it. ``lake share audit`` lists and filters it
for the bureau. Records never hold a token or a signed URL, only the token's public id."""
from __future__ import annotations

from datetime import datetime, timezone

from lake.settings import Settings
from sharing import store

FIELDS = ("at", "channel", "action", "department_code", "token_id", "resource", "columns", "rows", "purpose",
          "decision", "reason", "status", "client", "request")


def record(settings: Settings, *, channel: str, action: str, decision: str, department_code: str = "",
           token_id: str = "", resource: str = "", columns: list[str] | None = None, rows: int | None = None,
           purpose: str = "", reason: str = "", status: int = 200, client: str = "", request: str = "",
           at: datetime | None = None) -> dict:
    rec = {"at": at or datetime.now(timezone.utc), "channel": channel, "action": action,
           "department_code": department_code, "token_id": token_id, "resource": resource,
           "columns": list(columns) if columns is not None else None, "rows": rows, "purpose": purpose,
           "decision": decision, "reason": reason, "status": status, "client": client, "request": request}
    store.append(settings, store.AUDIT, [rec])
    return rec


def records(settings: Settings, department: str | None = None, resource: str | None = None,
            decision: str | None = None, since: datetime | None = None, action: str | None = None) -> list[dict]:
    out = []
    for r in sorted(store.read(settings, store.AUDIT), key=lambda r: r["at"]):
        if department and r["department_code"] != department:
            continue
        if resource and r["resource"] != resource:
            continue
        if decision and r["decision"] != decision:
            continue
        if action and r["action"] != action:
            continue
        if since and r["at"] < since:
            continue
        out.append(r)
    return out
