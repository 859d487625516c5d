"""``lake open …`` (directed opening: applications, approvals, tokens, downloads, the audit) and
``lake sandbox query`` (SQL under disclosure control). No JVM: the open zone's files and the
``_private/opendata`` tables are read and written with deltalake, queries run in DuckDB."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from lake.settings import Settings

open_app = typer.Typer(no_args_is_help=True, help="Directed opening (有条件开放): apply, approve, download with a token, audit.")
sandbox_app = typer.Typer(no_args_is_help=True, help="The sandbox (可用不可见): aggregate SQL over tables that cannot be downloaded.")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
RootOpt = typer.Option(None, "--root", envvar="LAKE_ROOT", help="Lake root (folder or s3a:// URI).")


def _settings(root: Optional[str]) -> Settings:
    s = Settings.from_env()
    return s.with_root(root) if root else s


def _run(fn):
    from lake.contracts import ContractError

    try:
        return fn()
    except (ContractError, FileNotFoundError) as e:  # AccessError and OpenDataError are ContractErrors
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(1)


@open_app.command("apply")
def apply_cmd(
    applicant: str = typer.Option(..., "--as", help="Who applies (the organisation or person signing the agreement)."),
    resource: str = typer.Option(..., "--resource", help="A directed dataset's id, or sandbox:<table> (e.g. sandbox:base.population)."),
    purpose: str = typer.Option(..., "--purpose", help="What the data will be used for."),
    accept: bool = typer.Option(False, "--accept-agreement", help="Accept the resource's data-use agreement (shown when missing)."),
    columns: Optional[List[str]] = typer.Option(None, "--column", help="Sandbox only: a column to apply for (repeat; default all non-personal columns)."),
    root: Optional[str] = RootOpt,
):
    """Apply for a dataset under directed opening or for a sandbox table; prints the application id."""
    from opendata import access

    rec = _run(lambda: access.apply(_settings(root), applicant, resource, purpose, accept, columns or None))
    console.print(f"application {rec['request_id']} recorded: {rec['applicant']} -> {rec['resource']} ({rec['kind']}); "
                  f"awaiting approval (lake open approve {rec['request_id']} --by ...)")


@open_app.command("approve")
def approve_cmd(
    request_id: str = typer.Argument(..., help="The application id (A…)."),
    by: str = typer.Option(..., "--by", help="Who approves."),
    days: int = typer.Option(30, "--days", help="Days until the token or the sandbox grant expires (1-366)."),
    root: Optional[str] = RootOpt,
):
    """Approve an application; its token (a download's, or the sandbox queries' credential) is printed
    this once (only its hash is kept)."""
    from opendata import access

    r = _run(lambda: access.approve(_settings(root), request_id, by, days))
    console.print(f"approved {request_id} for {r['applicant']} ({r['resource']}) until {r['expires_at']:%Y-%m-%d %H:%M} UTC")
    if "token" in r:
        console.print(f"token {r['token_id']} (shown once, give it to the applicant): {r['token']}")
        if r["kind"] == "download":
            console.print(f"download: lake open download --token {r['token']} --out DIR")
        else:
            console.print(f"sandbox: LAKE_SANDBOX_TOKEN={r['token']} lake sandbox query --as {r['applicant']} \"SQL\"")


@open_app.command("reject")
def reject_cmd(request_id: str = typer.Argument(...), by: str = typer.Option(..., "--by"),
               reason: str = typer.Option(..., "--reason"), root: Optional[str] = RootOpt):
    """Reject a pending application, saying why."""
    from opendata import access

    _run(lambda: access.reject(_settings(root), request_id, by, reason))
    console.print(f"rejected {request_id}")


@open_app.command("revoke")
def revoke_cmd(ident: str = typer.Argument(..., help="An application (A…) or a token id (T…)."),
               by: str = typer.Option(..., "--by"), reason: str = typer.Option("", "--reason"),
               root: Optional[str] = RootOpt):
    """Revoke an application (its grant and tokens) or one token, at once."""
    from opendata import access

    console.print(_run(lambda: access.revoke(_settings(root), ident, by, reason)))


@open_app.command("applications")
def applications_cmd(as_json: bool = typer.Option(False, "--json"), root: Optional[str] = RootOpt):
    """Every application and its state (pending, approved, rejected, revoked, expired)."""
    from opendata import access

    rows = _run(lambda: access.applications(_settings(root)))
    if as_json:
        console.print_json(json.dumps(rows, default=str, ensure_ascii=False))
        return
    t = Table("id", "applicant", "resource", "kind", "state", "purpose", "expires")
    for a in rows:
        t.add_row(a["request_id"], a["applicant"], a["resource"], a["kind"], a["state"], a["purpose"],
                  f"{a['expires_at']:%Y-%m-%d}" if a["expires_at"] else "")
    console.print(t)


@open_app.command("download")
def download_cmd(token: str = typer.Option(..., "--token", help="The token given at approval."),
                 out: Path = typer.Option(..., "--out", help="Folder to copy the dataset's files into."),
                 root: Optional[str] = RootOpt):
    """Download a directed dataset with a valid token (audited; refused with exit 1 otherwise)."""
    from opendata import access

    r = _run(lambda: access.download(_settings(root), token, out))
    console.print(f"downloaded {r['dataset']} ({r['rows']} rows): {', '.join(r['files'])} -> {r['out']}")


@open_app.command("audit")
def audit_cmd(applicant: Optional[str] = typer.Option(None, "--as"), resource: Optional[str] = typer.Option(None, "--resource"),
              decision: Optional[str] = typer.Option(None, "--decision"), as_json: bool = typer.Option(False, "--json"),
              root: Optional[str] = RootOpt):
    """Every application, approval, download and sandbox query, granted or refused."""
    from opendata import access

    rows = _run(lambda: access.audit_records(_settings(root), applicant, resource, decision))
    if as_json:
        console.print_json(json.dumps(rows, default=str, ensure_ascii=False))
        return
    t = Table("at (UTC)", "action", "applicant", "resource", "decision", "rows", "reason")
    for r in rows:
        t.add_row(f"{r['at']:%Y-%m-%d %H:%M:%S}", r["action"], r["applicant"], r["resource"], r["decision"],
                  "" if r["rows"] is None else str(r["rows"]), r["reason"])
    console.print(t)


@sandbox_app.command("query")
def sandbox_query(sql: str = typer.Argument(..., help="One SELECT over a sandbox table, e.g. \"SELECT town, count(*) FROM base.population GROUP BY town\"."),
                  applicant: str = typer.Option(..., "--as", help="The applicant, holding an approved sandbox application."),
                  token: Optional[str] = typer.Option(None, "--token", envvar="LAKE_SANDBOX_TOKEN",
                                                      help="The token issued when the sandbox application was approved."),
                  as_csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
                  root: Optional[str] = RootOpt):
    """Run aggregate SQL in the sandbox: the result if it passes disclosure control, else the refusal (exit 1)."""
    from opendata import sandbox

    r = _run(lambda: sandbox.query(_settings(root), applicant, sql, token))
    if as_csv:
        console.print(r.csv(), end="", markup=False, highlight=False)
        return
    t = Table(*r.columns)
    for row in r.rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console.print(t)
