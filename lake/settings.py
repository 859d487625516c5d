"""Settings: one frozen object built from the environment, with safe local defaults.

Every location is configuration so that the same code runs on a laptop (``local[2]``, a folder in the
repository) and on a cluster with object storage (``spark://...`` or ``yarn``, ``s3a://bucket/lake``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ENV_VARS = {
    "LAKE_ROOT": "lake root: a folder or an object-store URI (s3a://bucket/lake)",
    "LAKE_SPARK_MASTER": "Spark master URL (local[2], spark://host:7077, yarn, ...)",
    "LAKE_JARS_DIR": "folder with the Delta jars fetched by ./setup.sh",
    "LAKE_CONTRACTS": "folder with the data contracts",
    "LAKE_INBOX": "folder where departments drop their files (<inbox>/<source>/*)",
    "LAKE_SHUFFLE_PARTITIONS": "spark.sql.shuffle.partitions",
    "LAKE_DRIVER_MEMORY": "spark.driver.memory",
    "LAKE_INGEST_WORKERS": "files of different sources landed at once (threads sharing the Spark session)",
    "LAKE_LOCK_TIMEOUT": "seconds a writer waits for another writer of the same table (0: do not wait)",
}


@dataclass(frozen=True)
class Settings:
    root: str = str(REPO / "lake_data")
    spark_master: str = "local[2]"
    jars_dir: str = str(REPO / ".cache" / "jars")
    contracts_dir: str = str(REPO / "contracts")
    inbox: str = ""  # default: <root>/inbox
    shuffle_partitions: int = 8
    driver_memory: str = "6g"
    ingest_workers: int = 2
    lock_timeout: float = 1800.0  # lake.locks: how long a writer waits for a table's lease
    extra_spark_conf: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inbox:
            object.__setattr__(self, "inbox", join(self.root, "inbox"))

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        kw = {}
        if env.get("LAKE_ROOT"):
            kw["root"] = env["LAKE_ROOT"]
        if env.get("LAKE_SPARK_MASTER"):
            kw["spark_master"] = env["LAKE_SPARK_MASTER"]
        if env.get("LAKE_JARS_DIR"):
            kw["jars_dir"] = env["LAKE_JARS_DIR"]
        if env.get("LAKE_CONTRACTS"):
            kw["contracts_dir"] = env["LAKE_CONTRACTS"]
        if env.get("LAKE_INBOX"):
            kw["inbox"] = env["LAKE_INBOX"]
        if env.get("LAKE_SHUFFLE_PARTITIONS"):
            kw["shuffle_partitions"] = int(env["LAKE_SHUFFLE_PARTITIONS"])
        if env.get("LAKE_DRIVER_MEMORY"):
            kw["driver_memory"] = env["LAKE_DRIVER_MEMORY"]
        if env.get("LAKE_INGEST_WORKERS"):
            kw["ingest_workers"] = int(env["LAKE_INGEST_WORKERS"])
        if env.get("LAKE_LOCK_TIMEOUT"):
            try:
                kw["lock_timeout"] = float(env["LAKE_LOCK_TIMEOUT"])
            except ValueError:
                raise ValueError(f"LAKE_LOCK_TIMEOUT must be a number of seconds, got '{env['LAKE_LOCK_TIMEOUT']}'") from None
        kw.update({k: v for k, v in overrides.items() if v is not None})
        if "root" in kw and "inbox" not in kw:
            kw["root"] = _normalise_root(kw["root"])
        return cls(**kw)

    def with_root(self, root: str) -> "Settings":
        return replace(self, root=_normalise_root(root), inbox=join(_normalise_root(root), "inbox"))

    def path(self, *parts: str) -> str:
        """URI of a lake location, as Spark wants it (s3a://... or an absolute local path)."""
        return join(self.root, *parts)


def _normalise_root(root: str) -> str:
    if "://" in root:
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out
