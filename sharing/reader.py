"""``lake share read``: a department reads a shared table from the command line with its profile file,
JVM-free (deltalake), through the same token check, access decision and audit as the server."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from lake.contracts import Contracts
from lake.settings import Settings
from sharing import access, audit, grants, tokens
from sharing.errors import Refused
from sharing.policy import Policy


def frame(table: pa.Table):
    """A pandas DataFrame of an Arrow table whose integer and boolean columns stay integers and booleans
    when they hold nulls (pandas' default turns a year column with a null into floats: 2026.0, NaN)."""
    import pandas as pd

    nullable = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=nullable.get)


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
        df = frame(io.delta_table(uri).to_pyarrow_table())
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


CHANGE_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")


def changes(settings: Settings, contracts: Contracts, policy: Policy, name: str, profile: Path, since: int,
            until: int | None = None):
    """What changed in a shared table after release ``since`` (up to ``until``, default the latest), as
    the department of a profile file sees it: the share copy's Change Data Feed (``jobs.publish.share.sync``
    writes each release as one MERGE, so the feed holds exactly the rows that changed), filtered and
    masked by the same plan as the department's view. A pandas DataFrame with the view's columns and
    ``_change_type`` (insert, update_preimage, update_postimage, delete), ``_commit_version`` and
    ``_commit_timestamp``; None when nothing came after ``since``. Audited like a read."""
    import pandas as pd

    from lake import io
    from sharing import masks

    doc = tokens.read_profile(profile)
    info = {"department_code": "", "token_id": tokens.token_id_of(doc.get("bearerToken")), "resource": name,
            "columns": None, "purpose": ""}
    request = f"lake share changes {name[:120]} --since {since}"
    try:
        tok = tokens.verify(settings, doc["bearerToken"])
        info["department_code"] = tok.department_code
        tid = table_id(policy, contracts, name)
        info["resource"] = tid
        acc = access.decide(settings, contracts, policy, tok.department_code, tid, datetime.now(timezone.utc))
        info["purpose"], info["columns"] = acc.purpose, acc.columns
        zone, table = tid.split(".", 1)
        dt = io.delta_table(settings.path("share", f"{zone}__{table}"))
        end = dt.version() if until is None else until
        if not 0 <= since <= dt.version() or end > dt.version():
            raise Refused(400, f"--since/--until must be releases of {tid} (0 to {dt.version()})")
        if since >= end:
            feed = []
        else:
            try:
                cdf = dt.load_cdf(starting_version=since + 1, ending_version=end).read_all()
            except Exception as e:  # a release written before the change feed was on (a full rewrite)
                raise Refused(409, f"{tid}: no change feed between releases {since} and {end} "
                                   f"({str(e).splitlines()[0][:160]}); read the whole table instead") from None
            # deltalake returns an arro3 table (Arrow C stream): pyarrow reads it without a copy
            feed = pa.table(cdf).to_pylist()
    except Refused as r:
        info["department_code"] = info["department_code"] or r.department_code
        audit.record(settings, channel="cli", action="changes", decision="refused", reason=r.reason, status=r.status,
                     request=request, **info)
        raise
    rows = masks.apply_plan_py(feed, acc.plan)
    kept = [f for f in feed if all(str(f.get(c["column"])) in {str(v) for v in c["values"]}
                                   and f.get(c["column"]) is not None for c in acc.plan.row_filter)]
    records = [{**r, **{c: f[c] for c in CHANGE_COLUMNS}} for r, f in zip(rows, kept)]
    names = [*acc.columns, *CHANGE_COLUMNS]
    df = frame(pa.Table.from_pylist(records)).reindex(columns=names) if records else pd.DataFrame(columns=names)
    audit.record(settings, channel="cli", action="changes", decision="granted", rows=len(df), status=200,
                 request=request, **info)
    return None if since >= end else df
