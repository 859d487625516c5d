"""``lake``: the command line of the Daxing lake. Every command calls the same job entry points as
the Airflow DAGs. User mistakes (bad files, unknown sources, failed gates, missing set-up) print a
clear message and exit non-zero; they never print a stack trace."""
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

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, help=__doc__.split("\n")[0])
share_app = typer.Typer(no_args_is_help=True, help="Read the share zone as a department.")
app.add_typer(share_app, name="share")
console = Console(stderr=False)
err = Console(stderr=True, soft_wrap=True)

RootOpt = typer.Option(None, "--root", envvar="LAKE_ROOT", help="Lake root (folder or s3a:// URI).")
AsOfOpt = typer.Option(None, "--as-of", help="Reference date YYYY-MM-DD (default: today; the orchestrator passes its run date).")


def _settings(root: Optional[str]) -> Settings:
    s = Settings.from_env()
    return s.with_root(root) if root else s


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
    from lake.spark import SetupError

    handled: tuple = (ContractError, InputError, SetupError, FileNotFoundError)
    try:
        from quality.gates import GateFailed
        from jobs.publish import AccessDenied

        handled += (GateFailed, AccessDenied)
    except ImportError:
        pass
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
):
    """Write deterministic synthetic department files, manifest.json and truth/defects.csv."""
    from lake.generate import generate as gen

    if scale <= 0:
        raise typer.BadParameter("--scale must be > 0")
    manifest = gen(scale, seed, out, progress=lambda s, n: console.print(f"  {s}: {n:,} rows"))
    console.print(f"wrote {len(manifest['files'])} files to {out} (manifest.json, truth/defects.csv)")


@app.command("ingest")
def ingest_cmd(
    source: str = typer.Option(..., "--source", help="Source id, e.g. psb_household (see contracts/sources)."),
    files: List[Path] = typer.Argument(None, help="Files to ingest (default: every file in <inbox>/<source>/)."),
    root: Optional[str] = RootOpt,
):
    """Land files: landing (checksummed) -> raw + quarantine. Prints rows read / landed / quarantined."""
    _setup_logging()
    from jobs import ingest

    results = _guard(lambda: ingest.run(_settings(root), source, [str(f) for f in files] if files else None))
    t = Table("file", "read", "landed", "quarantined", "findings", "note")
    for r in results:
        t.add_row(r["file"], f"{r['rows_read']:,}", f"{r['rows_raw']:,}", f"{r['rows_quarantined']:,}",
                  f"{r['findings']:,}", "already ingested, nothing added" if r["skipped"] else r["detected_encoding"])
    console.print(t)


@app.command()
def build(as_of: Optional[str] = AsOfOpt, root: Optional[str] = RootOpt):
    """Build base and topic tables through their quality gates."""
    _setup_logging()
    from jobs import build_base, build_topic

    s = _settings(root)
    a = _as_of(as_of)
    for r in _guard(lambda: build_base.run(s, a) + build_topic.run(s, a)):
        console.print(f"  {r['table']}: {r['status']} ({r['rows']:,} rows)")


@app.command("publish")
def publish_cmd(root: Optional[str] = RootOpt):
    """Publish to the share zone and the open zone."""
    _setup_logging()
    from jobs import publish

    console.print_json(data=_guard(lambda: publish.run(_settings(root))))


def _run_pipeline(s: Settings, a: str) -> dict:
    from jobs import pipeline

    def progress(stage, i, n):
        console.rule(f"[bold]stage {i}/{n}: {stage}")

    return _guard(lambda: pipeline.run(s, a, progress=progress))


@app.command()
def run(as_of: Optional[str] = AsOfOpt, root: Optional[str] = RootOpt):
    """Run the whole pipeline once, in-process, on whatever is in the inbox."""
    _setup_logging()
    s = _settings(root)
    report = _run_pipeline(s, _as_of(as_of))
    _summary(s, report)


@app.command()
def demo(
    scale: float = typer.Option(0.01, "--scale", help="Sample size; 1.0 = Daxing's size."),
    seed: int = typer.Option(42, "--seed"),
    root: Optional[str] = RootOpt,
):
    """Generate sample data into the inbox, ingest, build, gate and publish everything, then summarise."""
    _setup_logging()
    from lake.generate import DEFAULT_EXTRACT_DATE, generate as gen

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
    for r in st["build_base"]["result"] + st["build_topic"]["result"]:
        t.add_row(r["table"], r["status"], f"{r['rows']:,}")
    for r in st["publish"]["result"]["share"]:
        t.add_row(r["table"], r["status"], "")
    for r in st["publish"]["result"]["open"]:
        t.add_row(f"open/{r['dataset']}", r["status"], f"{r['rows']:,}")
    console.print(t)
    console.print("seconds per stage: " + ", ".join(f"{k} {v['seconds']}" for k, v in st.items()))
    console.print(f"\nwhere to look:\n  lake root        {s.root}\n  run report       {report.get('report_path')}\n"
                  f"  quality docs     {docs_index(s)}\n  open datasets    {s.path('open')}\n"
                  f"  tables (no JVM)  .venv/bin/lake status --root {s.root}")


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
        t.add_row(r["table"], str(r["version"]), f"{r['rows']:,}", r["operation"])
    console.print(t)


@share_app.command("read")
def share_read(
    table: str = typer.Argument(..., help="Share table, e.g. base__population"),
    department: str = typer.Option(..., "--as", help="The reading department (must hold a grant)."),
    limit: int = typer.Option(10, "--limit"),
    root: Optional[str] = RootOpt,
):
    """Show rows of a share-zone table, if the department holds a grant for it."""
    _setup_logging()
    from jobs.publish import read_share
    from lake.spark import get_spark

    s = _settings(root)
    df = _guard(lambda: read_share(get_spark(s), s, table, department))
    console.print(df.limit(limit).toPandas().to_string())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(ctx: typer.Context, root: Optional[str] = RootOpt):
    """Run the airflow CLI with this project's settings (e.g. `lake airflow standalone`)."""
    env = airflow_env(_settings(root))
    os.environ.update(env)
    exe = str(Path(sys.executable).parent / "airflow")
    os.execv(exe, [exe, *ctx.args])


def airflow_env(s: Settings) -> dict:
    return {
        "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(REPO / ".airflow")),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "LAKE_ROOT": s.root,
    }


def main() -> None:
    app()


if __name__ == "__main__":
    main()
