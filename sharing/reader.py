"""``lake share read``: a department reads a shared table from the command line with its profile file,
JVM-free (deltalake), through the same token check, access decision and audit as the server."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from lake.contracts import Contracts
from lake.settings import Settings
from sharing import access, audit, grants, tokens
from sharing.errors import Refused
from sharing.policy import Policy


def table_id(policy: Policy, contracts: Contracts, name: str) -> str:
    """``daxing.base.population``, ``base.population`` or ``base__population`` -> ``base.population``."""
    parts = name.split(".")
    if len(parts) == 3:
        return access.table_id(policy, contracts, *parts)
    if len(parts) == 2:
        return access.table_id(policy, contracts, policy.share, *parts)
    if "__" in name:
        return access.table_id(policy, contracts, policy.share, *name.split("__", 1))
    raise Refused(400, f"malformed table name {name[:80]!r}: expected {policy.share}.<schema>.<table>")


def read(settings: Settings, contracts: Contracts, policy: Policy, name: str, profile: Path,
         columns: list[str] | None = None, where: str | None = None):
    """The rows of the department's view as a pandas DataFrame; every call is audited."""
    from lake import io

    doc = tokens.read_profile(profile)
    info = {"department_code": "", "token_id": tokens.token_id_of(doc.get("bearerToken")), "resource": name,
            "columns": columns, "purpose": ""}
    try:
        tok = tokens.verify(settings, doc["bearerToken"])
        info["department_code"] = tok.department_code
        tid = table_id(policy, contracts, name)
        info["resource"] = tid
        acc = access.decide(settings, contracts, policy, tok.department_code, tid, datetime.now(timezone.utc))
        info["purpose"] = acc.purpose
        hidden = [c for c in (columns or []) if c not in acc.columns]
        if hidden:
            raise Refused(403, f"column(s) {hidden} are not granted to department {tok.department_code} for {tid}; "
                               f"granted columns: {', '.join(acc.columns)}")
        conds = []
        if where:
            try:
                conds = grants.parse_row_filter(where, contracts.table(tid))
            except grants.RequestError as e:
                raise Refused(400, f"--where: {e}") from None
            sql = [f"{c['column']} = '{v}'" for c in conds for v in c["values"][:1]] if all(
                len(c["values"]) == 1 for c in conds) else []
            access.check_hints(acc, None, sql)
            for c in conds:
                if c["column"] not in acc.columns:
                    raise Refused(403, f"--where names column '{c['column']}', which is not granted")
                for rf in acc.plan.row_filter:
                    if rf["column"] == c["column"] and not set(c["values"]) <= set(map(str, rf["values"])):
                        raise Refused(403, f"--where asks for {c['column']} in {c['values']}, outside the grant's row "
                                           f"filter ({grants.row_filter_text([rf])})")
        uri = settings.path("share", acc.view)
        df = io.delta_table(uri).to_pandas()
        for c in conds:
            df = df[df[c["column"]].astype(str).isin([str(v) for v in c["values"]])]
        if columns:
            df = df[columns]
        info["columns"] = list(df.columns)
    except Refused as r:
        info["department_code"] = info["department_code"] or r.department_code
        audit.record(settings, channel="cli", action="read", decision="refused", reason=r.reason, status=r.status,
                     request=f"lake share read {name[:120]}", **info)
        raise
    audit.record(settings, channel="cli", action="read", decision="granted", rows=len(df), status=200,
                 request=f"lake share read {name[:120]}", **info)
    return df.reset_index(drop=True)
