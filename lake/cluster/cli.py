"""The `lake cluster ...` sub-app and `lake airflow up|down` (wired into lake/cli.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

cluster_app = typer.Typer(no_args_is_help=True, help="The cluster tier on 127.0.0.1: Spark standalone + SeaweedFS (S3).")
console = Console()
err = Console(stderr=True, soft_wrap=True)


def _run(fn):
    from lake.cluster.procs import ClusterError
    from lake.spark import SetupError

    try:
        return fn()
    except (ClusterError, SetupError) as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(1)


def _say(msg: str) -> None:
    console.print(f"[bold]\\[cluster][/] {msg}")


@cluster_app.command("install")
def install_cmd():
    """Install the cluster tier's programs: Debian's postgresql (apt-get, if missing) and SeaweedFS's
    weed built from its Go module into .cache/bin (minutes; ~230 MB)."""
    from lake.cluster import install

    _run(lambda: install.install(_say))


@cluster_app.command("up")
def up_cmd(
    env_file: Optional[Path] = typer.Option(None, "--env-file", help="Also write the environment to export (KEY=VALUE lines) here."),
    workers: int = typer.Option(2, "--workers", min=1, help="Spark workers (one core each)."),
    worker_memory: str = typer.Option("5g", "--worker-memory", help="Memory each worker offers executors."),
    executor_memory: str = typer.Option("4g", "--executor-memory", help="LAKE_EXECUTOR_MEMORY written to the environment."),
):
    """Start SeaweedFS (S3, with the lake bucket) and a Spark master with workers on 127.0.0.1, wait
    until they answer and write the environment a shell must export (LAKE_SPARK_MASTER, LAKE_ROOT,
    LAKE_S3_*) to <state>/cluster.env and --env-file."""
    from lake.cluster import procs, services

    env = _run(lambda: services.up(workers, worker_memory, executor_memory, env_file, _say))
    where = env_file or procs.home() / "cluster.env"
    _say(f"environment written to {where}: `set -a; . {where}; set +a` to use it "
         f"(LAKE_ROOT={env['LAKE_ROOT']}, LAKE_SPARK_MASTER={env['LAKE_SPARK_MASTER']})")


@cluster_app.command("down")
def down_cmd():
    """Stop the Spark workers and master and SeaweedFS started by `lake cluster up` (by pid file)."""
    from lake.cluster import services

    stopped = _run(lambda: services.down(_say))
    if not stopped:
        _say("nothing was running")


@cluster_app.command("status")
def status_cmd():
    """What runs (pid) and where (URL): Spark, SeaweedFS, and PostgreSQL/Airflow of `lake airflow up`."""
    from lake.cluster import airflow_pg, procs, services

    rows = services.status() + airflow_pg.status()
    if not rows:
        console.print(f"nothing started from {procs.home()}")
        raise typer.Exit(0)
    t = Table("component", "state", "pid", "url")
    for r in rows:
        t.add_row(r["component"], "running" if r["pid"] else "[red]stopped[/]", str(r["pid"] or "-"), r["url"])
    console.print(t)
    console.print(f"state folder: {procs.home()}")


def airflow_tier(args: list[str]) -> None:
    """`lake airflow up` / `lake airflow down`: the PostgreSQL-backed Airflow."""
    from lake.cluster import airflow_pg

    verb, rest = args[0], args[1:]
    if rest:
        err.print(f"[bold red]error:[/] `lake airflow {verb}` takes no arguments (got {' '.join(rest)})")
        raise typer.Exit(2)
    if verb == "up":
        info = _run(lambda: airflow_pg.up(_say))
        _say(f"use it from a shell with AIRFLOW_HOME={info['airflow_home']} (e.g. "
             f"`AIRFLOW_HOME={info['airflow_home']} lake airflow dags list`); UI and REST API at {info['url']}")
    else:
        stopped = _run(lambda: airflow_pg.down(_say))
        if not stopped:
            _say("nothing was running")
