"""The Airflow metadata database as `lake airflow` configures it.

On SQLite (what ./setup.sh creates in ``.airflow/``) the scheduler, dag-processor, triggerer, api-server
and every task process share one database file with one writer at a time. Python's sqlite3 gives up
waiting for the write lock after 5 seconds: on a busy 2-core machine the scheduler, dag-processor and
triggerer of ``airflow standalone`` then die at start-up with "database is locked" while the
api-server keeps answering. ``lake airflow`` therefore passes SQLite a longer busy timeout (Airflow's
``[database] sql_alchemy_connect_args``, an import path to a dict), unless the user configured the
connection arguments or another database.
"""
from __future__ import annotations

import configparser
import os
from pathlib import Path

SQLITE_BUSY_SECONDS = 120
SQLITE_CONNECT_ARGS = {"timeout": SQLITE_BUSY_SECONDS}  # sqlite3.connect(timeout=...): the busy timeout
SQLITE_CONNECT_ARGS_ASYNC = {"timeout": SQLITE_BUSY_SECONDS}  # aiosqlite (the api-server's async sessions)


def _configured(home: str, key: str) -> str | None:
    """``[database] <key>`` from the environment or ``<home>/airflow.cfg``; None when not set."""
    env = os.environ.get(f"AIRFLOW__DATABASE__{key.upper()}")
    if env is not None:
        return env
    cfg = Path(home) / "airflow.cfg"
    if not cfg.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(cfg, encoding="utf-8")
    except configparser.Error:
        return None
    return parser.get("database", key, fallback=None) or None


def env_for(home: str) -> dict:
    """The AIRFLOW__DATABASE__* settings `lake airflow` adds for the metadata database in ``home``."""
    conn = _configured(home, "sql_alchemy_conn")
    if conn is not None and not conn.startswith("sqlite"):
        return {}
    out = {}
    if _configured(home, "sql_alchemy_connect_args") is None:
        out["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = f"{__name__}.SQLITE_CONNECT_ARGS"
    if _configured(home, "sql_alchemy_connect_args_async") is None:
        out["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] = f"{__name__}.SQLITE_CONNECT_ARGS_ASYNC"
    return out
