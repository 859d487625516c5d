"""``lake share ...`` and ``lake catalog ...``: the sharing service and the chained catalogue from the
command line (mounted by ``lake.cli``). Every command takes ``--root``; mistakes print one line and
exit 1; nothing prints a stack trace."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

share_app = typer.Typer(no_args_is_help=True, help=(
    "The share zone as a service: the Delta Sharing server, department tokens, requests and grants "
    "(申请 -> 审核 -> 授权), reads with a profile file, the audit and supply/demand metrics."))
token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens of departments (stored hashed, revocable).")
share_app.add_typer(token_app, name="token")
catalog_app = typer.Typer(no_args_is_help=True, help=(
    "The resource catalogue (政务数据资源目录) and its hash chain (目录链): show, verify, history."))

console = Console()
err = Console(stderr=True, soft_wrap=True)

RootOpt = typer.Option(None, "--root", envvar="LAKE_ROOT", help="Lake root (folder or s3a:// URI).")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _settings(root):
    from lake.settings import Settings

    s = Settings.from_env()
    return s.with_root(root) if root else s


def _fail(msg: str, code: int = 1):
    err.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(code)


def _run(fn):
    """Run ``fn``; known mistakes become one red line and exit 1."""
    from lake.contracts import ContractError
    from lake.spark import SetupError
    from sharing.errors import Refused
    from sharing.grants import RequestError

    try:
        return fn()
    except Refused as e:
        _fail(f"refused: {e.reason}")
    except (ContractError, RequestError, SetupError, ValueError, FileNotFoundError) as e:
        _fail(str(e))


def _ctx(root):
    from lake import contracts as contracts_mod
    from sharing import policy as policy_mod

    s = _settings(root)
    return s, _run(lambda: contracts_mod.load(s.contracts_dir)), _run(lambda: policy_mod.load(s.contracts_dir))


def _print(rows: list[dict], columns: list[str], title: str = "") -> None:
    t = Table(*columns, title=title)
    for r in rows:
        t.add_row(*["" if r.get(c) is None else (", ".join(map(str, r[c])) if isinstance(r.get(c), list) else str(r[c]))
                    for c in columns])
    console.print(t)


def _json(data) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


ProfileOpt = typer.Option(None, "--profile", help="Act as the department of this profile file (its token).")


def _who(s, code: Optional[str], profile: Optional[Path], flag: str) -> str:
    """The acting department: from a profile file's token (verified), or the code an operator of the
    bureau records with ``flag`` (a decision taken outside the lake); both must agree when both are given."""
    from sharing import tokens

    if profile is not None:
        doc = _run(lambda: tokens.read_profile(profile))
        rec = _run(lambda: tokens.verify(s, doc["bearerToken"]))
        if code and code != rec.department_code:
            _fail(f"{flag} {code} is not the department of {profile} ({rec.department_code})")
        return rec.department_code
    if not code:
        _fail(f"give --profile (the department's profile file) or {flag} (its code)")
    return code


def _publish_sharing(s) -> dict:
    """Rebuild the grantee views, share/_grants and the catalogue (+ chain) after a decision."""
    from catalog import resources
    from lake.spark import get_spark
    from sharing.views import publish_views

    spark = get_spark(s)
    return {"views": publish_views(spark, s), "catalog": resources.publish(spark, s)}


# ---------------------------------------------------------------- server and tokens

@share_app.command("serve")
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
          port: int = typer.Option(8765, "--port", help="Port to listen on."),
          root: Optional[str] = RootOpt):
    """Serve the Delta Sharing protocol (/delta-sharing) to departments until stopped (Ctrl-C)."""
    from sharing import server

    s, _, pol = _ctx(root)
    console.print(f"serving share '{pol.share}' of {s.root} at http://{host}:{port}{server.PREFIX}/ (Ctrl-C stops)")
    server.serve(s, host, port)


@token_app.command("issue")
def token_issue(department: str = typer.Option(..., "--department", help="11-digit department code."),
                out: Path = typer.Option(..., "--out", help="Profile file to write (Delta Sharing, JSON)."),
                days: Optional[int] = typer.Option(None, "--days", help="Validity (default: contracts/sharing.yaml)."),
                endpoint: str = typer.Option("http://127.0.0.1:8765/delta-sharing", "--endpoint",
                                             help="The server's URL as the department reaches it."),
                root: Optional[str] = RootOpt):
    """Issue a bearer token to a department and write its Delta Sharing profile file (the only copy of
    the token: the lake keeps its sha256)."""
    from sharing import tokens

    s, c, pol = _ctx(root)
    token, rec = _run(lambda: tokens.issue(s, c, department, days or pol.token_days))
    tokens.write_profile(out, endpoint, token, rec.expires_at)
    console.print(f"token {rec.token_id} for {c.department(department).name} ({department}), valid until "
                  f"{rec.expires_at:%Y-%m-%d}; profile written to {out} (keep it secret)")


@token_app.command("revoke")
def token_revoke(token_id: Optional[str] = typer.Argument(None, help="Token id (the middle part, 12 hex)."),
                 department: Optional[str] = typer.Option(None, "--department", help="Revoke all of its tokens."),
                 root: Optional[str] = RootOpt):
    """Revoke a token (or every token of a department): its next request is refused."""
    from sharing import tokens

    s = _settings(root)
    done = _run(lambda: tokens.revoke(s, token_id, department))
    console.print(f"revoked {len(done)} token(s): {', '.join(t.token_id for t in done) or '(all were already revoked)'}")


@token_app.command("list")
def token_list(as_json: bool = JsonOpt, root: Optional[str] = RootOpt):
    """Tokens (ids, departments, state): never the tokens themselves."""
    from sharing import tokens

    s = _settings(root)
    now = datetime.now(timezone.utc)
    rows = [{"token_id": t.token_id, "department_code": t.department_code, "issued_at": t.issued_at.isoformat(),
             "expires_at": t.expires_at.isoformat(), "state": t.state(now)} for t in tokens.tokens(s).values()]
    _json(rows) if as_json else _print(rows, ["token_id", "department_code", "issued_at", "expires_at", "state"])


# ---------------------------------------------------------------- requests and grants

@share_app.command("request")
def request(department: Optional[str] = typer.Option(None, "--department", help="The applying department's code."),
            profile: Optional[Path] = ProfileOpt,
            table: str = typer.Option(..., "--table", help="Table id, e.g. base.population."),
            purpose: str = typer.Option(..., "--purpose", help="What the data is for."),
            legal_basis: str = typer.Option(..., "--legal-basis", help="The law or duty that allows it."),
            columns: Optional[str] = typer.Option(None, "--columns", help="Comma-separated columns (default: all)."),
            clear: Optional[str] = typer.Option(None, "--clear", help="Columns needed unmasked (comma-separated)."),
            row_filter: Optional[str] = typer.Option(None, "--row-filter", help="e.g. \"town = '黄村镇'\"."),
            days: int = typer.Option(365, "--days", help="How long the grant is needed."),
            as_json: bool = JsonOpt, root: Optional[str] = RootOpt):
    """Apply for a table or some of its columns (申请); the owning department decides."""
    from sharing import grants

    s, c, pol = _ctx(root)
    department = _who(s, department, profile, "--department")
    cols = [x.strip() for x in columns.split(",") if x.strip()] if columns else None
    clr = [x.strip() for x in clear.split(",") if x.strip()] if clear else []
    q = _run(lambda: grants.apply(s, c, department, table, purpose, legal_basis, cols, clr, row_filter or "", days,
                                  pol.grant_max_days))
    if as_json:
        _json(q.as_dict(datetime.now(timezone.utc)))
    else:
        owner = c.department_named(c.table(table).owner)
        console.print(f"request {q.request_id}: {department} applies for {table}; awaiting the decision of "
                      f"{owner.name} ({owner.code}): lake share approve {q.request_id} --by {owner.code}")


@share_app.command("approve")
def approve(request_id: str = typer.Argument(...),
            by: Optional[str] = typer.Option(None, "--by", help="Code of the department that owns the table."),
            profile: Optional[Path] = ProfileOpt,
            days: Optional[int] = typer.Option(None, "--days", help="Grant expiry in days (default: as requested)."),
            note: str = typer.Option("", "--note"),
            publish: bool = typer.Option(True, "--publish/--no-publish",
                                         help="Materialise the grantee's view and update the catalogue now (Spark)."),
            root: Optional[str] = RootOpt):
    """Approve a request (审核 -> 授权): the grant's view is published and the catalogue chains the grant."""
    from sharing import grants

    s, c, pol = _ctx(root)
    by = _who(s, by, profile, "--by")
    q = _run(lambda: grants.approve(s, c, request_id, by, days, pol.grant_max_days, note))
    console.print(f"approved {q.request_id}: {q.department_code} may read {q.table} until {q.expires_at:%Y-%m-%d}")
    if publish:
        _run(lambda: _publish_sharing(s))
        console.print("grantee view and catalogue published")


@share_app.command("reject")
def reject(request_id: str = typer.Argument(...), by: Optional[str] = typer.Option(None, "--by"),
           profile: Optional[Path] = ProfileOpt,
           reason: str = typer.Option(..., "--reason"), root: Optional[str] = RootOpt):
    """Reject a request, with the reason the applicant will see."""
    from sharing import grants

    s, c, _ = _ctx(root)
    by = _who(s, by, profile, "--by")
    q = _run(lambda: grants.reject(s, c, request_id, by, reason))
    console.print(f"rejected {q.request_id}: {reason}")


@share_app.command("revoke")
def revoke(request_id: str = typer.Argument(...), by: Optional[str] = typer.Option(None, "--by"),
           profile: Optional[Path] = ProfileOpt, reason: str = typer.Option(..., "--reason"),
           publish: bool = typer.Option(True, "--publish/--no-publish"), root: Optional[str] = RootOpt):
    """Revoke an approved grant: refused at once; its view is deleted by the next publication."""
    from sharing import grants

    s, c, _ = _ctx(root)
    by = _who(s, by, profile, "--by")
    q = _run(lambda: grants.revoke(s, c, request_id, by, reason))
    console.print(f"revoked grant {q.request_id} of {q.department_code} on {q.table}")
    if publish:
        _run(lambda: _publish_sharing(s))


@share_app.command("requests")
def requests_cmd(status: Optional[str] = typer.Option(None, "--status", help="pending, approved, rejected, revoked, expired."),
                 department: Optional[str] = typer.Option(None, "--department"),
                 as_json: bool = JsonOpt, root: Optional[str] = RootOpt):
    """Requests and their state (open requests: --status pending)."""
    from sharing import grants

    s = _settings(root)
    now = datetime.now(timezone.utc)
    rows = [q.as_dict(now) for q in sorted(grants.requests(s).values(), key=lambda q: q.applied_at)
            if (not status or q.state(now) == status) and (not department or q.department_code == department)]
    _json(rows) if as_json else _print(rows, ["request_id", "department_code", "table", "columns", "row_filter",
                                              "status", "applied_at", "expires_at"])


@share_app.command("grants")
def grants_cmd(department: Optional[str] = typer.Option(None, "--department"), as_json: bool = JsonOpt,
               root: Optional[str] = RootOpt):
    """What each department can read now: every view with its basis, columns, row filter and expiry."""
    from sharing import access

    s, c, pol = _ctx(root)
    now = datetime.now(timezone.utc)
    rows = []
    for d in sorted(c.departments):
        if department and d != department:
            continue
        for a in access.readable(s, c, pol, d, now):
            rows.append({"department_code": d, "table": a.table, "basis": a.basis, "grant_id": a.grant_id,
                         "columns": a.columns, "row_filter": [f"{x['column']} in {x['values']}" for x in a.plan.row_filter],
                         "view": f"share/{a.view}"})
    _json(rows) if as_json else _print(rows, ["department_code", "table", "basis", "grant_id", "row_filter", "view"])


@share_app.command("metrics")
def metrics_cmd(as_json: bool = JsonOpt, root: Optional[str] = RootOpt):
    """Supply and demand: unconditional share rate vs target, open requests, time to decision, reads."""
    from sharing import metrics

    m = metrics.compute(_settings(root))
    if as_json:
        _json(m)
        return
    sup, dem = m["supply"], m["demand"]
    console.print(f"unconditional share rate {sup['unconditional_share_rate']:.1%} of {sup['tables']} tables "
                  f"(target {sup['target']:.0%}: {'met' if sup['target_met'] else 'NOT met'}); {sup['by_share_type']}")
    console.print(f"requests {dem['requests']}, open {dem['open_requests']}, active grants {dem['active_grants']}, "
                  f"time to decision (h) median {dem['time_to_decision_hours']['median']} "
                  f"mean {dem['time_to_decision_hours']['mean']}")
    _print([{"resource": k, **v} for k, v in m["use"]["reads_per_resource"].items()],
           ["resource", "granted", "refused", "departments"], title="reads per resource")


@share_app.command("audit")
def audit_cmd(as_json: bool = JsonOpt, department: Optional[str] = typer.Option(None, "--department"),
              resource: Optional[str] = typer.Option(None, "--resource", help="Table id, e.g. base.population."),
              decision: Optional[str] = typer.Option(None, "--decision", help="granted or refused."),
              action: Optional[str] = typer.Option(None, "--action", help="query, read, file, metadata, ..."),
              since: Optional[str] = typer.Option(None, "--since", help="ISO date or time (UTC)."),
              limit: int = typer.Option(0, "--limit", help="Only the last N records (0: all)."),
              root: Optional[str] = RootOpt):
    """The audit of every read (server and CLI, granted or refused), oldest first."""
    from sharing import audit

    s = _settings(root)
    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            _fail(f"--since must be an ISO date or time, got '{since}'")
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    if decision and decision not in ("granted", "refused"):
        _fail(f"--decision is granted or refused, got '{decision}'")
    rows = audit.records(s, department, resource, decision, when, action)
    rows = rows[-limit:] if limit else rows
    out = [{"department": r["department_code"], "resource": r["resource"], "columns": r["columns"], "rows": r["rows"],
            "decision": r["decision"], "reason": r["reason"], "at": r["at"].isoformat(), "action": r["action"],
            "channel": r["channel"], "purpose": r["purpose"], "token_id": r["token_id"], "status": r["status"],
            "client": r["client"]} for r in rows]
    _json(out) if as_json else _print(out, ["at", "channel", "action", "department", "resource", "rows", "decision",
                                            "reason"])


@share_app.command("read")
def read(table: str = typer.Argument(..., help="daxing.base.population, base.population or base__population."),
         profile: Path = typer.Option(..., "--profile", help="The department's profile file (its credentials)."),
         columns: Optional[str] = typer.Option(None, "--columns", help="Only these columns (comma-separated)."),
         where: Optional[str] = typer.Option(None, "--where", help="Rows, e.g. \"town = '黄村镇'\"."),
         limit: int = typer.Option(10, "--limit"), as_json: bool = JsonOpt, root: Optional[str] = RootOpt):
    """Read a shared table as the department of a profile file (JVM-free), through the same access
    decision and audit as the server."""
    from sharing import reader

    s, c, pol = _ctx(root)
    cols = [x.strip() for x in columns.split(",") if x.strip()] if columns else None
    df = _run(lambda: reader.read(s, c, pol, table, profile, cols, where))
    if as_json:
        print(df.head(limit).to_json(orient="records", force_ascii=False, date_format="iso"))
    else:
        console.print(f"{len(df):,} rows")
        console.print(df.head(limit).to_string())


@share_app.command("changes")
def changes_cmd(table: str = typer.Argument(..., help="daxing.base.population, base.population or base__population."),
                profile: Path = typer.Option(..., "--profile", help="The department's profile file (its credentials)."),
                since: int = typer.Option(..., "--since", help="The last release (share version) the department has read."),
                until: Optional[int] = typer.Option(None, "--until", help="Up to this release (default: the latest)."),
                limit: int = typer.Option(10, "--limit"), as_json: bool = JsonOpt, root: Optional[str] = RootOpt):
    """What changed in a shared table after a release, as the department of a profile file sees it (its
    view's columns, masks and row filter): one row per inserted, deleted or updated row (pre- and
    post-image), from the share copy's Change Data Feed, JVM-free; audited like a read."""
    from sharing import reader

    s, c, pol = _ctx(root)
    df = _run(lambda: reader.changes(s, c, pol, table, profile, since, until))
    if df is None:
        console.print(f"{table}: nothing after release {since}")
        return
    if as_json:
        print(df.head(limit).to_json(orient="records", force_ascii=False, date_format="iso"))
        return
    counts = df["_change_type"].value_counts().to_dict()
    console.print(f"{table}: {len(df):,} change rows after release {since}: "
                  + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    console.print(df.head(limit).to_string())


@share_app.command("publish")
def publish_cmd(root: Optional[str] = RootOpt):
    """Rebuild the grantee views, share/_grants and the catalogue with its chain (the DAG does this after
    every publication)."""
    s = _settings(root)
    out = _run(lambda: _publish_sharing(s))
    _json(out)


# ---------------------------------------------------------------- catalogue

@catalog_app.command("show")
def catalog_show(resource: Optional[str] = typer.Argument(None, help="A resource code or id (default: all)."),
                 as_json: bool = JsonOpt, root: Optional[str] = RootOpt):
    """The catalogue entries (GB/T 21063 fields, grants, gate, quality, freshness)."""
    from catalog import resources

    docs = resources.documents(_settings(root))
    if not docs:
        _fail("no catalogue yet; run `lake publish`")
    if resource:
        docs = [d for d in docs if resource in (d["resource_code"], d["resource_id"])]
        if not docs:
            _fail(f"no resource '{resource}' in the catalogue")
    if as_json:
        _json(docs)
        return
    _print([{**d, "gate": (d.get("gate") or {}).get("success"), "fresh": (d.get("freshness") or {}).get("fresh")}
            for d in docs], ["resource_code", "resource_id", "name", "provider", "share_type", "grade", "gate",
                             "quality_score", "fresh"])


@catalog_app.command("verify")
def catalog_verify(root: Optional[str] = RootOpt):
    """Recompute the chain (目录链) and compare the current catalogue with it: exit 0 when it holds, 1
    naming the first block (or entry) that does not match."""
    from catalog import chain, resources

    s = _settings(root)
    try:
        blocks = chain.blocks(s)
    except Exception as e:  # a data file or log of the chain that cannot be read is itself tampering
        _fail(f"the catalogue chain cannot be read (catalog/chain): {str(e).splitlines()[0][:200]}")
    if not blocks:
        _fail("no catalogue chain yet (catalog/chain); run `lake publish`")
    problem = chain.verify_blocks(blocks)
    if problem is None:
        for where, cat in resources.current(s).items():
            problem = chain.verify_catalogue(blocks, cat, where)
            if problem:
                break
    if problem:
        _fail(f"the catalogue chain does not hold: {problem}")
    console.print(f"the catalogue chain holds: {len(blocks)} blocks, last hash {blocks[-1]['hash'][:16]}…; "
                  f"{len(chain.heads(blocks))} entries match their last block")


@catalog_app.command("history")
def catalog_history(code: str = typer.Argument(..., help="Resource code (or id)."), as_json: bool = JsonOpt,
                    root: Optional[str] = RootOpt):
    """The chain blocks of one resource: when it was added and every change since (fields, old -> new)."""
    from catalog import chain

    rows = chain.history(chain.blocks(_settings(root)), code)
    if not rows:
        _fail(f"no resource '{code}' in the catalogue chain")
    if as_json:
        _json(rows)
        return
    _print([{**r, "changes": "; ".join(f"{k}: {json.dumps(v['from'], ensure_ascii=False)[:40]} -> "
                                         f"{json.dumps(v['to'], ensure_ascii=False)[:40]}" for k, v in r["changes"].items())}
            for r in rows], ["index", "at", "kind", "resource_code", "fields", "changes"])
