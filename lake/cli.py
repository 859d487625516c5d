"""``lake``: the command line of the Daxing district data lake.

Every command calls the same job entry points as the Airflow DAGs. User mistakes (bad files, unknown
sources, failed gates, missing set-up) print a clear message and exit non-zero; they never print a
stack trace."""
from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from lake.settings import REPO, Settings

HELP = ("The command line of the Daxing district data lake: land department files, build the base and topic "
        "databases through their quality gates, publish them, and report quality back to the departments. "
        "Every command calls the same job entry points as the Airflow DAGs, and takes --root (or LAKE_ROOT).")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, help=HELP)
# the share zone as a service and the chained catalogue (sharing/cli.py)
from sharing.cli import catalog_app, share_app  # noqa: E402

app.add_typer(share_app, name="share")
app.add_typer(catalog_app, name="catalog")
contracts_app = typer.Typer(no_args_is_help=True, help="Check the contracts and export them in other formats.")
app.add_typer(contracts_app, name="contracts")
from lake.cluster.cli import cluster_app  # noqa: E402 (the cluster tier's sub-app: lake/cluster/)

app.add_typer(cluster_app, name="cluster")
portal_app = typer.Typer(no_args_is_help=True, help="Build and view the static open-data portal (opendata/portal.py).")
app.add_typer(portal_app, name="portal")
from opendata.cli import open_app, sandbox_app  # noqa: E402 (directed opening and the sandbox: opendata/)

app.add_typer(open_app, name="open")
app.add_typer(sandbox_app, name="sandbox")
console = Console(stderr=False)
err = Console(stderr=True, soft_wrap=True)

RootOpt = typer.Option(None, "--root", envvar="LAKE_ROOT", help="Lake root (folder or s3a:// URI).")
AsOfOpt = typer.Option(None, "--as-of", help="Reference date YYYY-MM-DD (default: today; the orchestrator passes its run date).")


def _settings(root: Optional[str]) -> Settings:
    # --root (or LAKE_ROOT) over the environment; an explicit LAKE_INBOX stays the inbox
    return Settings.from_env(root=root)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING, handlers=[RichHandler(console=err, show_path=False, show_time=False)],
                        format="%(message)s", force=True)
    logging.getLogger("lake").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("py4j", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _as_of(value: Optional[str]) -> str:
    if value is None:
        return date.today().isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"--as-of must be a date YYYY-MM-DD, got '{value}'") from None


def _guard(fn):
    """Run ``fn``; turn known user-facing errors into one red line and exit code 1."""
    from lake.contracts import ContractError
    from lake.files import InputError
    from lake.reference import ReferenceError
    from lake.spark import SetupError
    from quality.gates import GateFailed

    from lake.locks import LockBusy

    handled: tuple = (ContractError, InputError, SetupError, FileNotFoundError, GateFailed, ReferenceError, LockBusy)
    try:
        return fn()
    except handled as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(1)


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", help="Folder to write the department files into."),
    scale: float = typer.Option(0.01, "--scale", help="1.0 = Daxing's size (1.81 M people, 144 K legal entities)."),
    seed: int = typer.Option(42, "--seed"),
    iot_days: int = typer.Option(1, "--iot-days", help="Days of sensor readings, ending on the extract date (0: none)."),
    days: int = typer.Option(0, "--days", help="Write OUT/day-01 (the first full delivery) … OUT/day-NN (daily "
                             "changes), each an inbox with its own manifest.json (as_of) and truth/."),
):
    """Write deterministic synthetic department files (population, legal entities, the base map, the
    sensing ledger and readings), manifest.json, iot_manifest.json and the truth/ folder."""
    from sample.generate import generate as gen

    if scale <= 0:
        raise typer.BadParameter("--scale must be > 0")
    if iot_days < 0:
        raise typer.BadParameter("--iot-days must be >= 0")
    if days < 0:
        raise typer.BadParameter("--days must be >= 1")
    if days:
        from sample.generate_days import generate_days

        manifests = generate_days(days, scale, seed, out, iot_days=iot_days,
                                  progress=lambda k, s, n: console.print(f"  day-{k:02d} {s}: {n:,} rows"))
        for m in manifests:
            console.print(f"day-{m['day']:02d}: as_of {m['as_of']}, {len(m['files'])} department files")
        console.print(f"wrote {days} day(s) of deliveries to {out}/day-01 … day-{days:02d} (manifest.json, truth/)")
        return
    manifest = gen(scale, seed, out, progress=lambda s, n: console.print(f"  {s}: {n:,} rows"), iot_days=iot_days)
    n = len(manifest["files"]) + len(manifest.get("spatial_files", [])) + len(manifest.get("governance_files", []))
    console.print(f"wrote {n} department files (+ sensing ledger and {iot_days} day(s) of readings) to {out} "
                  "(manifest.json, iot_manifest.json, truth/)")


@app.command("ingest")
def ingest_cmd(
    source: Optional[str] = typer.Option(None, "--source", help="Source id, e.g. psb_household (see contracts/sources; "
                                         "default: every row-by-row source with files in the inbox)."),
    files: List[Path] = typer.Argument(None, help="Files to ingest (default: every file in <inbox>/<source>/)."),
    root: Optional[str] = RootOpt,
):
    """Land files: landing (checksummed) -> raw + quarantine. Prints rows read / landed / quarantined."""
    _setup_logging()
    from jobs.landing import ingest
    from lake import landing

    s = _settings(root)
    if source is None and files:
        raise typer.BadParameter("name the source of the files with --source")
    if source is None:
        from lake import contracts

        results = _guard(lambda: ingest.run_many(s, landing.inbox_items(s, contracts.load(s.contracts_dir).row_sources())))
    else:
        results = _guard(lambda: ingest.run(s, source, [str(f) for f in files] if files else None))
    if not landing.has_new(results):
        console.print(landing.nothing_message(s, source), soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(0)
    t = Table("file", "read", "landed", "quarantined", "findings", "note")
    for r in results:
        t.add_row(r["file"], f"{r['rows_read']:,}", f"{r['rows_raw']:,}", f"{r['rows_quarantined']:,}",
                  f"{r['findings']:,}", "already ingested, nothing added" if r["skipped"] else r["detected_encoding"])
    console.print(t)


@app.command()
def build(as_of: Optional[str] = AsOfOpt, root: Optional[str] = RootOpt):
    """Build every base and topic table through its quality gate, in the order the contracts give
    (a job whose inputs do not exist yet is skipped, saying what it waits for)."""
    _setup_logging()
    from jobs import pipeline

    s = _settings(root)
    a = _as_of(as_of)
    report = _guard(lambda: pipeline.build(s, a))
    for name, st in report["stages"].items():
        for r in st["result"]:
            note = f" ({r['reason']})" if r.get("reason") else ""
            console.print(f"  {r['table']}: {r['status']} ({r['rows']:,} rows){note}")


@app.command("publish")
def publish_cmd(root: Optional[str] = RootOpt):
    """Publish the share zone, the open zone and the resource catalogue."""
    _setup_logging()
    from jobs import publish

    console.print_json(data=_guard(lambda: publish.run(_settings(root))))


def _run_pipeline(s: Settings, a: str) -> dict:
    from jobs import pipeline

    def progress(stage, i, n):
        console.rule(f"[bold]stage {i}/{n}: {stage}")

    return _guard(lambda: pipeline.run(s, a, progress=progress))


@app.command()
def run(as_of: Optional[str] = AsOfOpt, root: Optional[str] = RootOpt,
        inbox: Optional[Path] = typer.Option(None, "--inbox", help="Process this folder's deliveries (e.g. DIR/day-03 "
                                             "of `lake generate --days`) instead of <root>/inbox; the base tables "
                                             "are built incrementally (only the entities the deliveries touch).")):
    """Run the whole pipeline once, in-process, on whatever is in the inbox: land the day's
    deliveries, build what they change (incrementally once a table exists), report and publish."""
    _setup_logging()
    s = _settings(root)
    if inbox is not None:
        from dataclasses import replace

        if not inbox.is_dir():
            raise typer.BadParameter(f"--inbox {inbox}: no such folder")
        s = replace(s, inbox=str(inbox.resolve()))
    report = _run_pipeline(s, _as_of(as_of))
    if report.get("nothing_to_do"):
        console.print(report["nothing_to_do"], soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(0)
    _summary(s, report)


@app.command("query")
def query_cmd(
    sql: str = typer.Argument(..., help="One SELECT over base.<name> and topic.<name> (e.g. \"SELECT town, count(*) "
                              "FROM base.population GROUP BY town\")."),
    as_of: str = typer.Option(..., "--as-of", help="Business date YYYY-MM-DD: every table as it stood on that day."),
    root: Optional[str] = RootOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON lines."),
):
    """Read-only SQL (DuckDB, no JVM) over the base and topic tables as of a business date: base
    tables from their history (validity periods), the others by Delta time travel."""
    from lake.asof import QueryError, query

    s = _settings(root)
    try:
        cols, rows = _guard(lambda: query(s, as_of, sql))
    except QueryError as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(1)
    if as_json:
        for r in rows:
            console.print_json(data=dict(zip(cols, r)), default=str)
        return
    t = Table(*cols)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)
    console.print(f"{len(rows):,} row(s) as of {as_of}")


@app.command()
def verify(root: Optional[str] = RootOpt):
    """Verify every landed copy against landing/_manifest (sha256): repair it from the inbox or report
    it as a finding (landed_copy_corrupt). Exit 1 when a copy could not be repaired."""
    _setup_logging()
    from lake import landing

    s = _settings(root)
    r = _guard(lambda: landing.verify_all(s))
    for line in r["problems"]:
        console.print(f"  {line}")
    console.print(f"landed copies: {r['ok']:,} verified, {r['repaired']:,} repaired, {r['corrupt']:,} corrupt")
    raise typer.Exit(1 if r["corrupt"] else 0)


@app.command()
def demo(
    scale: float = typer.Option(0.01, "--scale", help="Sample size; 1.0 = Daxing's size."),
    seed: int = typer.Option(42, "--seed"),
    root: Optional[str] = RootOpt,
):
    """Generate sample data into the inbox, ingest, build, gate and publish everything, then summarise."""
    _setup_logging()
    from sample.generate import DEFAULT_EXTRACT_DATE, generate as gen

    s = _settings(root)
    if "://" in s.inbox:
        raise typer.BadParameter("demo writes sample files to a local inbox; set LAKE_INBOX to a folder")
    console.rule(f"[bold]generating sample department files (scale {scale}, seed {seed})")
    gen(scale, seed, Path(s.inbox), progress=lambda src, n: console.print(f"  {src}: {n:,} rows"))
    report = _run_pipeline(s, DEFAULT_EXTRACT_DATE.isoformat())
    _summary(s, report)


def _summary(s: Settings, report: dict) -> None:
    from quality.gates import docs_index

    console.rule("[bold green]done")
    st = report["stages"]
    t = Table("file", "read", "raw", "quarantine", "findings", title="ingest")
    for r in st["ingest"]["result"]:
        t.add_row(r["file"], f"{r['rows_read']:,}", f"{r['rows_raw']:,}", f"{r['rows_quarantined']:,}",
                  f"{r['findings']:,}" if not r["skipped"] else "already ingested")
    console.print(t)
    t = Table("table", "status", "rows", title="built and published")
    for name, stage in st.items():
        if name in ("ingest", "timeliness", "reports", "publish"):
            continue
        for r in stage["result"]:
            label = r["table"] + (f" (delivered {r['delivery_day']})" if r.get("delivery_day") else "")
            t.add_row(label, r["status"] + (f": {r['reason']}" if r.get("reason") else ""), f"{r['rows']:,}")
    for r in st["publish"]["result"]["share"]:
        t.add_row(r["table"], r["status"], "")
    for r in st["publish"]["result"]["open"]:
        t.add_row(f"open/{r['dataset']}", r["status"], f"{r['rows']:,}")
    console.print(t)
    for r in st.get("base.standard_address", {}).get("result", []):
        match = r.get("match") or {}
        if match:
            t = Table("source", "addresses", "matched", "match rate", title="addresses linked to the standard address library")
            for src, m in sorted(match.items()):
                t.add_row(src, f"{m['records']:,}", f"{m['matched']:,}", f"{m['match_rate']:.2%}")
            console.print(t)
    for r in st.get("base.iot_reading", {}).get("result", []):
        x = r.get("readings") or {}
        if x:
            console.print(f"sensor readings delivered {r['delivery_day']}: read {x['rows_read']:,}, kept {x['kept']:,}, "
                          f"duplicates {x['duplicates']:,}, quarantined {x['quarantined']:,}"
                          + (" (already ingested)" if x["skipped"] else ""))
    console.print("seconds per stage: " + ", ".join(f"{k} {v['seconds']}" for k, v in st.items()))
    for line in report.get("stale_sources", []):
        console.print(f"[yellow]stale source:[/] {line}")
    ev = report.get("evaluation")
    if ev:
        _print_evaluation(ev)
    qr = report.get("quality_reports") or {}
    if qr:
        console.print("department quality scores: " + ", ".join(f"{d} {v:.1f}" for d, v in qr["scores"].items()))
    console.print(f"\nwhere to look:\n  lake root        {s.root}\n  run report       {report.get('report_path')}\n"
                  f"  quality docs     {docs_index(s)}\n  open datasets    {s.path('open')}\n"
                  f"  dept. reports    {qr.get('index', s.path('reports', 'index.html'))}\n"
                  f"  Spark log        {report.get('spark_log') or '-'}\n"
                  f"  tables (no JVM)  .venv/bin/lake status --root {s.root}")


def _print_evaluation(ev: dict) -> None:
    from sample import evaluate as ev_mod

    t = Table("defect type", "injected", "found", "precision", "recall", "", title="detection vs the generator's truth")
    for name, truth, found, p, r, ok in ev_mod.table(ev):
        t.add_row(name, f"{truth:,}", f"{found:,}", f"{p:.4f}", f"{r:.4f}", "[green]ok" if ok == "ok" else f"[red]{ok}")
    console.print(t)
    lk = ev.get("linkage") or {}
    if lk:
        console.print(f"record linkage of rows without an ID: {lk['linked']:,} linked, {lk['review']:,} for review, "
                      f"{lk['unmatched']:,} unmatched; precision {lk['precision']:.4f}, recall {lk['recall']:.4f}")
    for src, v in sorted(((ev.get("locations") or {}).get("sources") or {}).items()):
        console.print(f"town assignment {src}: accuracy {v['accuracy']:.4f} on {v['compared']:,} points")
    if (ev.get("iot") or {}).get("locations"):
        v = ev["iot"]["locations"]
        console.print(f"town assignment iot_devices: accuracy {v['accuracy']:.4f} on {v['devices']:,} devices")
    for src, v in sorted(((ev.get("addresses") or {}).get("sources") or {}).items()):
        m, u = v["match"], v["unmatched"]
        console.print(f"address links {src}: match precision {m['precision']:.4f} recall {m['recall']:.4f}, "
                      f"unmatched precision {u['precision']:.4f} recall {u['recall']:.4f}")


@app.command()
def evaluate(
    truth: str = typer.Option(..., "--truth", help="Folder written by `lake generate` (manifest.json, truth/)."),
    root: Optional[str] = RootOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """Detection precision and recall per defect type against the generator's truth files.
    Exit 1 when any defect type is below 0.99."""
    _setup_logging()
    from sample import evaluate as ev_mod
    from lake.spark import get_spark

    from lake.files import InputError

    s = _settings(root)
    if not ev_mod.has_truth(truth):
        err.print(f"[bold red]error:[/] {truth} has no manifest.json and truth/defects.csv; "
                  "evaluate needs the folder written by `lake generate`")
        raise typer.Exit(2)
    try:
        ev = ev_mod.evaluate(get_spark(s), s, truth)
    except InputError as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2)
    if json_out:
        print(json.dumps(ev, ensure_ascii=False, indent=2, default=str))
    else:
        _print_evaluation(ev)
    raise typer.Exit(0 if ev["passed"] else 1)


@app.command()
def status(root: Optional[str] = RootOpt):
    """List the lake's Delta tables with version and row count (reads with deltalake, no JVM)."""
    from lake import catalog_view

    s = _settings(root)
    rows = catalog_view.tables(s)
    if not rows:
        console.print(f"no tables under {s.root}")
        raise typer.Exit(0)
    t = Table("table", "version", "rows", "last operation")
    for r in rows:
        if r.get("status", "ok") != "ok":  # unfinished or damaged (lake.tables)
            t.add_row(r["table"], "-", "-", f"[yellow]{r['status']}")
            continue
        t.add_row(r["table"], str(r["version"]), f"{r['rows']:,}", r["operation"])
    console.print(t)
    from lake import locks

    for h in locks.holders(s.root):  # a folder or S3 (lake.locks.S3Store)
        console.print(f"lock {h.get('table')}: {'stale, ' if h.get('stale') else ''}held by {locks.holder_line(h)}")


@app.command("check")
def check_cmd(
    source: str = typer.Option(..., "--source", help="Source id, e.g. psb_household (see contracts/sources)."),
    file: Path = typer.Argument(..., help="The department file to check."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    limit: int = typer.Option(20, "--limit", help="How many problem rows to show."),
    root: Optional[str] = RootOpt,
):
    """Check a file as ingest would, without landing anything. Exit 0: nothing blocks; 1: findings
    would block publication (contracts/policy.yaml); 2: the source, file or policy is wrong."""
    _setup_logging()
    from jobs.governance import check
    from lake.contracts import ContractError
    from lake.files import InputError

    from lake.spark import SetupError

    try:
        result = check.check_file(_settings(root), source, file, limit=limit)
    except (ContractError, InputError, FileNotFoundError) as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2)
    except SetupError as e:  # the machine, not the file: same as the other commands
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    else:
        _print_check(result)
    raise typer.Exit(0 if result["passed"] else 1)


def _print_check(r: dict) -> None:
    console.print(f"[bold]{r['file']}[/] as [bold]{r['source']}[/] ({r['department']}), "
                  f"{r['detected_encoding']}, sha256 {r['sha256'][:16]}…")
    t = Table("rows read", "would land", "would quarantine", "findings", "blocking")
    t.add_row(f"{r['rows_read']:,}", f"{r['would_land']:,}", f"{r['would_quarantine']:,}", f"{r['findings']:,}",
              f"{r['blocking_findings']:,}")
    console.print(t)
    if r["by_rule"]:
        t = Table("rule", "defect type", "severity", "count", "blocks", title="findings by rule")
        for x in r["by_rule"]:
            t.add_row(x["rule"], x["defect_type"], x["severity"], f"{x['count']:,}", "yes" if x["blocking"] else "no")
        console.print(t)
        t = Table("row", "record key", "field", "rule", "severity", "reason", "value",
                  title=f"first {len(r['problems'])} problem rows (row = line in the file, header = 1)")
        for p in r["problems"]:
            t.add_row(str(p["row"]), p["record_key"] or "", p["field"] or "", p["rule"], p["severity"],
                      p["message"] or "", (p["value"] or "")[:60])
        console.print(t)
    if r["passed"]:
        console.print("[bold green]passed:[/] nothing would block publication")
    else:
        console.print(f"[bold red]blocked:[/] {r['blocking_findings']:,} finding(s) would block publication "
                      f"(blocking severities: {', '.join(r['policy']['blocking_severities'])})")


@app.command("report")
def report_cmd(
    run_id: Optional[str] = typer.Option(None, "--run", help="Report run id (default: the latest)."),
    root: Optional[str] = RootOpt,
):
    """Where the department quality reports are, and each department's score (no JVM)."""
    from jobs.governance.reports import SCORES, department_folder

    s = _settings(root)
    latest_uri = s.path("reports", "latest.json")
    path = s.path(*SCORES)
    try:
        from lake import io

        history = io.delta_table(path).to_pyarrow_table().to_pylist()
    except Exception:  # no table yet (deltalake raises its own TableNotFoundError)
        history = []
    if not history:
        err.print(f"[bold red]error:[/] no department reports under {s.root}; run `lake run` (or the lake__report DAG) first")
        raise typer.Exit(1)
    from lake import io

    if run_id is None:
        run_id = (json.loads(io.read_bytes(latest_uri))["run_id"] if io.file_exists(latest_uri)
                  else max(history, key=lambda h: (h["as_of"], h["run_id"]))["run_id"])
    rows = [h for h in history if h["run_id"] == run_id]
    if not rows:
        known = sorted({h["run_id"] for h in history})
        err.print(f"[bold red]error:[/] unknown report run '{run_id}'; known runs: {', '.join(known)}")
        raise typer.Exit(1)
    console.print(f"reports of run [bold]{run_id}[/] (as of {rows[0]['as_of']}): {s.path('reports', run_id)}")
    console.print(f"overview: {s.path('reports', 'index.html')}")
    t = Table("department", "code", "score", "findings", "rows", "stale sources", "report")
    for r in sorted(rows, key=lambda r: (r["score"], r["department_code"])):
        folder = department_folder(r["department_code"], r["department"])
        t.add_row(r["department"], r["department_code"], f"{r['score']:.1f}", f"{r['findings']:,}", f"{r['rows']:,}",
                  r["stale"] or "", f"{run_id}/{folder}/index.html")
    console.print(t)


@contracts_app.command("check")
def contracts_check(contracts: Optional[Path] = typer.Option(None, "--contracts", envvar="LAKE_CONTRACTS",
                                                              help="Contracts folder (default: the repository's).")):
    """Validate every contract strictly and every job module against the contracts that name it; list
    the jobs in build order. Exit 1 naming the file and key of the first problem."""
    from lake import registry

    folder = str(contracts or Settings.from_env().contracts_dir)
    reg = _guard(lambda: registry.load(folder))
    _guard(lambda: registry.check_modules(reg))
    c = reg.contracts
    t = Table("job", "builds", "upstream", "runs", title=f"{len(c.sources)} sources, {len(c.tables)} tables: valid")
    for j in reg.order():
        t.add_row(j.name, ", ".join(j.tables), ", ".join(j.upstream), j.schedule or "when an upstream table changes")
    console.print(t)


@contracts_app.command("export")
def contracts_export(
    out: Path = typer.Option(..., "--out", help="Folder to write one file per table into."),
    fmt: str = typer.Option("odcs", "--format", help="odcs: Open Data Contract Standard v3 YAML."),
    contracts: Optional[Path] = typer.Option(None, "--contracts", envvar="LAKE_CONTRACTS"),
):
    """Write every table contract in another format (ODCS v3 YAML), each validated against that
    format's schema before it is written."""
    import yaml

    from lake import contracts as contracts_mod
    from lake import odcs

    if fmt != "odcs":
        raise typer.BadParameter(f"unknown format '{fmt}'; known: odcs")
    c = _guard(lambda: contracts_mod.load(str(contracts or Settings.from_env().contracts_dir)))
    out.mkdir(parents=True, exist_ok=True)
    for tc in sorted(c.tables.values(), key=lambda t: t.table):
        doc = odcs.to_odcs(tc)
        problems = odcs.validate(doc)
        if problems:
            err.print(f"[bold red]error:[/] {tc.table}: the ODCS document does not conform: {problems[0]}")
            raise typer.Exit(1)
        (out / f"{tc.table}.odcs.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
                                                   encoding="utf-8")
    console.print(f"wrote {len(c.tables)} ODCS v3 contracts to {out}")
@portal_app.command("build")
def portal_build(
    out: Path = typer.Option(..., "--out", help="Folder to write the site into (DIR/index.html); replaced if an earlier build made it."),
    root: Optional[str] = RootOpt,
):
    """Build the static open-data portal from the open zone (no JVM): one page per dataset, search,
    charts, maps, downloads, DCAT metadata and the last gate result."""
    from opendata import portal

    r = _guard(lambda: portal.build(_settings(root), out))
    console.print(f"wrote the open-data portal ({len(r['datasets'])} datasets) to {r['index']}; "
                  f"view it with `lake portal serve --dir {out}` or open the file in a browser", soft_wrap=True)


@portal_app.command("serve")
def portal_serve(
    port: int = typer.Option(8000, "--port", help="Port on 127.0.0.1."),
    directory: Optional[Path] = typer.Option(None, "--dir", help="A site built by `lake portal build` (default: build one now into a temporary folder)."),
    root: Optional[str] = RootOpt,
):
    """Serve the portal on http://127.0.0.1:PORT/ until Ctrl-C."""
    import shutil
    import signal
    import tempfile

    from opendata import portal

    def stop(signum, frame):  # a service manager's SIGTERM stops it like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    tmp = Path(tempfile.mkdtemp(prefix="lake-portal-")) if directory is None else None
    try:
        if tmp is not None:
            directory = tmp / "site"
            _guard(lambda: portal.build(_settings(root), directory))
        httpd = _guard(lambda: portal.server(directory, port))
        console.print(f"serving {directory} at http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C to stop)", soft_wrap=True)
        try:
            httpd.serve_forever()
        finally:
            httpd.server_close()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(ctx: typer.Context, root: Optional[str] = RootOpt):
    """Run the airflow CLI with this project's settings (e.g. `lake airflow standalone`); `lake airflow
    up` / `lake airflow down` start and stop the PostgreSQL-backed Airflow (lake/cluster/)."""
    if ctx.args[:1] in (["up"], ["down"]):
        from lake.cluster.cli import airflow_tier

        return airflow_tier(ctx.args)
    env = airflow_env(_settings(root))
    os.environ.update(env)
    exe = str(Path(sys.executable).parent / "airflow")
    os.execv(exe, [exe, *ctx.args])


def airflow_env(s: Settings) -> dict:
    """The environment the airflow CLI runs with: this project's AIRFLOW_HOME and DAG folder, the
    lake root, the venv's bin first on PATH (``airflow standalone`` starts its components as
    ``airflow`` through PATH) and, on SQLite, a busy timeout long enough for a loaded machine
    (``lake.airflow_db``)."""
    from lake import airflow_db

    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    home = os.environ.get("AIRFLOW_HOME", str(REPO / ".airflow"))
    return {
        "PATH": venv_bin + (os.pathsep + path if path else ""),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "LAKE_ROOT": s.root,
        **airflow_db.env_for(home),
    }


def main() -> None:
    app()


if __name__ == "__main__":
    main()
