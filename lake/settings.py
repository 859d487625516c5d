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
    "LAKE_EXECUTOR_MEMORY": "spark.executor.memory on a cluster master (default: Spark's)",
    "LAKE_SPARK_DRIVER_HOST": "spark.driver.host: the address executors reach the driver on",
    "LAKE_S3_ENDPOINT": "S3 endpoint URL for s3a:// roots (http://127.0.0.1:8333; default: AWS)",
    "LAKE_S3_ACCESS_KEY": "S3 access key id",
    "LAKE_S3_SECRET_KEY": "S3 secret access key",
    "LAKE_S3_REGION": "S3 region (default us-east-1)",
    "LAKE_S3_PATH_STYLE": "path-style S3 URLs (true/false; default true when LAKE_S3_ENDPOINT is set)",
    "LAKE_OPEN_BASE_URL": "public URL the open-data portal is served at (DCAT download URLs are relative to it)",
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
    executor_memory: str = ""  # default: Spark's (1g); set on a cluster
    driver_host: str = ""  # default: Spark's (the host name)
    s3_endpoint: str = ""  # default: AWS
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    s3_path_style: bool | None = None  # default: True when s3_endpoint is set
    open_base_url: str = "http://127.0.0.1:8000/"  # where the portal (a mirror of <root>/open) is served
    lock_timeout: float = 1800.0  # lake.locks: how long a writer waits for a table's lease
    extra_spark_conf: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inbox:
            object.__setattr__(self, "inbox", join(self.root, "inbox"))
        _route_buckets(self)

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
        for var, key in (("LAKE_EXECUTOR_MEMORY", "executor_memory"), ("LAKE_SPARK_DRIVER_HOST", "driver_host"),
                         ("LAKE_S3_ENDPOINT", "s3_endpoint"), ("LAKE_S3_ACCESS_KEY", "s3_access_key"),
                         ("LAKE_S3_SECRET_KEY", "s3_secret_key"), ("LAKE_S3_REGION", "s3_region")):
            if env.get(var):
                kw[key] = env[var]
        if env.get("LAKE_S3_PATH_STYLE"):
            kw["s3_path_style"] = _bool("LAKE_S3_PATH_STYLE", env["LAKE_S3_PATH_STYLE"])
        if env.get("LAKE_OPEN_BASE_URL"):
            kw["open_base_url"] = env["LAKE_OPEN_BASE_URL"]
        if env.get("LAKE_LOCK_TIMEOUT"):
            try:
                kw["lock_timeout"] = float(env["LAKE_LOCK_TIMEOUT"])
            except ValueError:
                raise ValueError(f"LAKE_LOCK_TIMEOUT must be a number of seconds, got '{env['LAKE_LOCK_TIMEOUT']}'") from None
        kw.update({k: v for k, v in overrides.items() if v is not None})
        if "root" in kw:
            kw["root"] = _normalise_root(kw["root"])
        return cls(**kw)

    def with_root(self, root: str) -> "Settings":
        return replace(self, root=_normalise_root(root), inbox=join(_normalise_root(root), "inbox"))

    def path(self, *parts: str) -> str:
        """URI of a lake location, as Spark wants it (s3a://... or an absolute local path)."""
        return join(self.root, *parts)

    @property
    def uses_s3(self) -> bool:
        """True when the lake (or its inbox) is on S3 or S3 settings are given: Spark then needs S3A."""
        return (is_s3(self.root) or is_s3(self.inbox)
                or bool(self.s3_endpoint or self.s3_access_key or self.s3_secret_key))

    def s3_storage_options(self) -> dict:
        """The S3 settings as delta-rs / object_store storage options (JVM-free readers)."""
        opts = {"AWS_REGION": self.s3_region}
        if self.s3_endpoint:
            opts["AWS_ENDPOINT_URL"] = self.s3_endpoint
            if self.s3_endpoint.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        if self.s3_access_key:
            opts["AWS_ACCESS_KEY_ID"] = self.s3_access_key
        if self.s3_secret_key:
            opts["AWS_SECRET_ACCESS_KEY"] = self.s3_secret_key
        if self.s3_path_style if self.s3_path_style is not None else bool(self.s3_endpoint):
            opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        return opts


# How this process reaches each S3 bucket: the settings that last named it (as root or inbox). Code
# that only holds a URI (lake.io's file helpers, the JVM-free Delta readers) finds the endpoint and
# keys here; a bucket no settings named is reached with the environment's LAKE_S3_* settings.
_S3_ROUTES: dict[str, "Settings"] = {}


def bucket_of(uri: str) -> str:
    return uri.split("://", 1)[1].split("/", 1)[0]


def _route_buckets(settings: "Settings") -> None:
    for uri in (settings.root, settings.inbox):
        if is_s3(uri):
            _S3_ROUTES[bucket_of(uri)] = settings


def s3_settings(uri: str) -> "Settings":
    """The settings that reach the bucket of the s3/s3a ``uri``: the last Settings naming it, else the
    environment's."""
    found = _S3_ROUTES.get(bucket_of(uri))
    return found if found is not None else Settings.from_env()


def is_s3(uri: str) -> bool:
    return uri.split("://", 1)[0].lower() in ("s3a", "s3", "s3n") if "://" in uri else False


def _bool(var: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{var} must be true or false, got '{value}'")


def _normalise_root(root: str) -> str:
    if "://" in root:
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out
