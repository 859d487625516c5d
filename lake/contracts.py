"""Data contracts: the single source of truth for every source and table, validated strictly.

A source contract (``contracts/sources/*.yaml``) says how a department's file looks: columns, types,
encoding, update cycle, which checks each column gets. A table contract (``contracts/tables/*.yaml``)
says what a table is: grain, keys, the authoritative source of each column (一数一源), grade, share
and open type, its quality expectations, and where it sits in the flow: the job module that builds it
(``built_by``), the tables it is built from (``upstream``; ``requires``: the ones that must exist
before it can be built) and, for a table built on a clock rather than when its inputs change, its
``schedule``. Quality suites, catalogue entries, share grants, the DAGs and the pipeline's order are
generated from these files (``lake.registry``), never written twice.

Every file is validated with pydantic models that forbid unknown keys: a misspelt key (``pi:`` for
``pii:``, ``share_grant:`` for ``share_grants:``), a wrong type (``lng``) or a value out of range
(``grade: 7``) is a ``ContractError`` naming the file and the key, never a silent default. The models
are the schema; the frozen dataclasses below are what the code reads. Reference data the contracts
use (``${district}`` in a regex, ``values_from:`` / ``allowed_from:``) comes from
``contracts/reference.yaml`` (``lake.reference``). The format is the project's own, because it carries
what ODCS has no field for (one authority and a fallback order per column, cross rules, the flow);
``lake contracts export --format odcs`` writes every table as an Open Data Contract Standard v3
document (``lake.odcs``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lake.reference import REF

UPDATE_CYCLES = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}
CHECKS = {"cn_id", "cn_uscc", "cn_phone", "city_code"}
FORMATS = {"csv", "jsonl", "geojson"}
LOADERS = {"rows", "readings"}
SHARE_TYPES = {"unconditional", "conditional", "none"}
OPEN_TYPES = {"unconditional", "directed", "none"}
ZONES = ("base", "topic", "quality", "landing")  # zones with table contracts; base/topic are gated and published
GATED_ZONES = ("base", "topic")
SCALAR_TYPE = r"string|date|int|long|double|boolean|timestamp|decimal\(\d+,\d+\)|(map|array|struct)<.+>"
SOURCE_TYPE = r"string|date|int|long|double|decimal\(\d+,\d+\)"
TABLE_ID = r"^(raw|base|topic|quality|landing)\.[a-z][a-z0-9_]*$"
MODULE = r"^jobs(\.[a-z_][a-z0-9_]*)+$"
WRITER = r"^(jobs|quality|catalog)(\.[a-z_][a-z0-9_]*)+$"
DEPARTMENT_CODE = r"^[0-9]{11}$"
# how a column of grade 3-4 is protected when shared (sharing/masks.py): masked, generalised or excluded
PROTECTIONS = ("mask_id", "mask_mobile", "mask_name", "to_year", "to_town", "exclude")


class ContractError(ValueError):
    """A contract file is wrong; the message names the file and the field."""


# ------------------------------------------------------------------ the schema (pydantic, strict)

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Number = Union[int, float]


class When(_Strict):
    column: str
    equals: Any


class _Exp(_Strict):
    mostly: Annotated[float, Field(gt=0, le=1)] | None = None
    when: When | None = None


class NotNull(_Exp):
    type: Literal["not_null"]
    column: str


class Unique(_Exp):
    type: Literal["unique"]
    column: str


class CompoundUnique(_Exp):
    type: Literal["compound_unique"]
    columns: list[str] = Field(min_length=2)


class Regex(_Exp):
    type: Literal["regex", "not_regex"]
    column: str
    regex: str


class InSet(_Exp):
    type: Literal["in_set"]
    column: str
    values: list[Any] | None = None
    values_from: str | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.values is None) == (self.values_from is None):
            raise ValueError("in_set needs exactly one of 'values' and 'values_from'")
        return self


class Between(_Exp):
    type: Literal["between"]
    column: str
    min: Number | None = None
    max: Number | None = None


class RowCount(_Strict):
    type: Literal["row_count_between"]
    min: int | None = None
    max: int | None = None


Expectation = Annotated[Union[NotNull, Unique, CompoundUnique, Regex, InSet, Between, RowCount],
                        Field(discriminator="type")]


class SourceColumnModel(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: str = "string"
    required: bool = False
    title: str = ""
    pii: bool = False
    checks: list[Literal["cn_id", "cn_uscc", "cn_phone", "city_code"]] = []
    allowed: list[str] | None = None
    allowed_from: str | None = None
    normalize: bool = False

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not re.fullmatch(SOURCE_TYPE, v):
            raise ValueError(f"unknown type '{v}'; known: string, date, int, long, double, decimal(p,s)")
        return v

    @field_validator("allowed", mode="before")
    @classmethod
    def _allowed_text(cls, v):
        return None if v is None else [str(a) for a in v]


class ChangesModel(_Strict):
    """How a department sends changes (``delivery: {mode: changes, op_column: op}``): every file after
    the first is a change file whose ``op_column`` (when given) says insert, update or delete; a file
    without that column (the first full delivery, or an event feed such as births and deaths) is all
    inserts. ``mode: snapshot``: every file is the department's complete current list, so an entity
    missing from the newest snapshot has been removed."""
    mode: Literal["changes", "snapshot"]
    op_column: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    insert: str = "I"
    update: str = "U"
    delete: str = "D"

    @model_validator(mode="after")
    def _ops(self):
        if self.mode == "snapshot" and self.op_column:
            raise ValueError("a snapshot delivery has no op_column (every file is the complete list)")
        if len({self.insert, self.update, self.delete}) != 3:
            raise ValueError("insert, update and delete must be three different values")
        return self


class BoundModel(_Strict):
    """Relative bounds against the median of the last deliveries: ``max_drop: 0.3`` = at most 30 %
    below it, ``max_rise: 1.0`` = at most 100 % above it."""
    max_drop: Annotated[float, Field(ge=0, le=1)] | None = None
    max_rise: Annotated[float, Field(ge=0)] | None = None


class ColumnBoundsModel(_Strict):
    """Per column: ``null_rate_max_rise`` (absolute, 0.2 = 20 points above the median null rate),
    ``distinct`` (relative bounds of the distinct count), ``mean_max_change`` (relative change of
    the mean of a number or date column, dates as days since 1970)."""
    null_rate_max_rise: Annotated[float, Field(gt=0, le=1)] | None = None
    distinct: BoundModel | None = None
    mean_max_change: Annotated[float, Field(gt=0)] | None = None


class HistoryChecksModel(_Strict):
    """Checks of a delivery against the last ``window`` deliveries of the same kind (full file,
    change file or snapshot) of the source: with fewer than ``min_deliveries`` earlier ones, or when
    their median row count is below ``min_rows`` (too small to judge), it is not checked."""
    window: Annotated[int, Field(ge=1)] = 7
    min_deliveries: Annotated[int, Field(ge=1)] = 3
    min_rows: Annotated[int, Field(ge=0)] = 0
    rows: BoundModel | None = None
    columns: dict[str, ColumnBoundsModel] = {}


class DeregistrationModel(_Strict):
    """A register's deregistration date (注销/吊销日期) checked against the same row's status and
    establishment date at ingest (``jobs.landing.ingest``): ``date`` and ``established`` are date
    columns, ``status`` the register status (dead statuses: reference ``legal_entity.deregistered_statuses``)."""
    date: str
    status: str
    established: str | None = None


class SourceModel(_Strict):
    source: str
    title: str = ""
    department: str
    department_code: str = Field(pattern=r"^[0-9]{11}$")
    domain: str
    format: Literal["csv", "jsonl", "geojson"] = "csv"
    encoding: str = "auto"
    update_cycle: Literal["daily", "weekly", "monthly", "quarterly", "yearly"]
    record_key: str
    entity_key: str
    columns: list[SourceColumnModel] = Field(min_length=1)
    unique_key: list[str] | None = None
    derived_columns: dict[str, str] = {}
    entity_order: str = ""
    loader: Literal["rows", "readings"] = "rows"
    geometry: dict[str, str] | None = None
    delivery: ChangesModel | None = None
    history_checks: HistoryChecksModel | None = None
    # a field holding NUL or another C0 control character (except tab): quarantine the row, or clean
    # the characters away and keep it (lake.hostile)
    control_characters: Literal["quarantine", "clean"] = "quarantine"
    deregistration: DeregistrationModel | None = None


class TableColumnModel(_Strict):
    name: str = Field(pattern=r"^_?[a-z][a-z0-9_]*$")
    type: str = "string"
    title: str = ""
    authority: str = ""
    fallback: list[str] = []
    sources: dict[str, str] = {}
    derive: str = ""
    cross_check: bool = False
    pii: bool = False
    grade: Annotated[int, Field(ge=1, le=4)] | None = None
    # sharing (sharing/masks.py): how a column of grade 3-4 is protected; its length in the catalogue
    protect: Literal["mask_id", "mask_mobile", "mask_name", "to_year", "to_town", "exclude"] | None = None
    length: Annotated[int, Field(gt=0)] | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not re.fullmatch(SCALAR_TYPE, v):
            raise ValueError(f"unknown type '{v}'; known: string, date, int, long, double, boolean, timestamp, "
                             "decimal(p,s), map<..>, array<..>, struct<..>")
        return v

    @field_validator("authority", mode="before")
    @classmethod
    def _one_authority(cls, v):
        if isinstance(v, list):
            raise ValueError(f"names {len(v)} authoritative sources {v}; exactly one is allowed (一数一源), "
                             "put the others in 'fallback'")
        return v


class GeoJsonSpec(_Strict):
    points: list[str] | None = Field(default=None, min_length=2, max_length=2)
    polygons_from: str | None = None
    key: str = "town_code"

    @model_validator(mode="after")
    def _one(self):
        if (self.points is None) == (self.polygons_from is None):
            raise ValueError("geojson must be {points: [lon, lat]} or {polygons_from: base.admin_boundary, key: town_code}")
        return self


class ContactPoint(_Strict):
    name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ChartSpec(_Strict):
    """The portal's chart of the dataset's main measure by its main dimension (opendata/contract.py)."""
    x: str
    y: str | None = None
    agg: Literal["sum", "mean", "max", "min", "count"] = "sum"
    type: Literal["bar", "line"] = "bar"
    where: dict[str, Any] = {}


# generalisation levels of a de-identification rule (opendata/deid.py implements them)
GENERALISE_LEVELS = ("value", "month", "quarter", "year", "age_5y", "age_10y", "age_20y", "town", "district",
                     "grid_1km", "grid_5km", "*")
COLUMN_ACTIONS = ("keep", "drop", "pseudonymise", "suppress")


class GeneraliseRule(_Strict):
    """``{generalise: [month, quarter, year], as: event_month, title: 事件月份}``: the column's value at
    the first level, coarser levels the k-anonymity gate may move to (in order), the output name."""
    generalise: list[Literal["value", "month", "quarter", "year", "age_5y", "age_10y", "age_20y", "town", "district",
                             "grid_1km", "grid_5km", "*"]] = Field(min_length=1)
    as_: str | None = Field(default=None, alias="as", pattern=r"^[a-z][a-z0-9_]*$")
    title: str = ""
    at: str | None = None   # age_*: the date column the age is taken at (default: the run's reference date)
    lat: str | None = None  # grid_*: the latitude column (the rule sits on the longitude column)


ColumnRule = Union[Literal["keep", "drop", "pseudonymise", "suppress"], GeneraliseRule]


class OpenDatasetModel(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str
    keywords: list[str] = []
    geojson: GeoJsonSpec | None = None
    count_columns: list[str] = []
    theme: list[str] = Field(min_length=1)  # EU data themes (DCAT-AP dcat:theme, opendata/vocab.py)
    contact_point: ContactPoint
    chart: ChartSpec
    # de-identification and disclosure control (opendata/deid.py, opendata/cells.py; README "De-identification")
    kind: Literal["aggregate", "record"] = "aggregate"
    deidentify: dict[str, ColumnRule] = {}      # record: one rule per column of the table
    quasi_identifiers: list[str] | None = None  # record: output column names (as in data.csv)
    sensitive: list[str] = []                   # record: sensitive attributes for l-diversity
    k: Annotated[int, Field(ge=2)] = 5
    l: Annotated[int, Field(ge=1)] | None = None  # default 2 when sensitive attributes are named
    max_suppression: Annotated[float, Field(ge=0, lt=1)] = 0.05  # record: share of rows the gate may drop
    agreement: str = ""                         # directed opening: the data-use agreement applicants accept

    @field_validator("theme")
    @classmethod
    def _themes(cls, v: list[str]) -> list[str]:
        from opendata.vocab import THEMES

        bad = [t for t in v if t not in THEMES]
        if bad:
            raise ValueError(f"unknown EU data theme(s) {bad}; known: {', '.join(THEMES)}")
        return v


class SandboxModel(_Strict):
    """The table can be queried in the sandbox (可用不可见, opendata/sandbox.py) by approved applicants:
    aggregates only, every cell of at least ``k`` records; personal columns (pii) are never loaded."""
    k: Annotated[int, Field(ge=2)] = 10


class TableModel(_Strict):
    table: str = Field(pattern=r"^(base|topic|quality|landing)\.[a-z_][a-z0-9_]*$")
    title: str
    description: str = ""
    grain: str
    key: list[str] = Field(min_length=1)
    owner: str
    domain: str
    grade: Annotated[int, Field(ge=1, le=4)] = 1
    share_type: Literal["unconditional", "conditional", "none"]
    share_grants: list[Annotated[str, Field(pattern=DEPARTMENT_CODE)]] = []  # department codes (departments.yaml)
    share_condition: str = ""
    open_type: Literal["unconditional", "directed", "none"] = "none"
    open_condition: str = ""
    update_cycle: Literal["daily", "weekly", "monthly", "quarterly", "yearly"]
    built_by: str | None = Field(default=None, pattern=MODULE)
    written_by: list[Annotated[str, Field(pattern=WRITER)]] = []
    upstream: list[Annotated[str, Field(pattern=TABLE_ID)]] = []
    requires: list[Annotated[str, Field(pattern=TABLE_ID)]] | None = None
    schedule: str | None = None
    partition_by: str | None = None
    gate: bool = True
    columns: list[TableColumnModel] = Field(min_length=1)
    expectations: list[Expectation] = []
    open_dataset: OpenDatasetModel | None = None
    cross_rules: list[str] = []
    sandbox: SandboxModel | None = None

    @model_validator(mode="after")
    def _flow(self):
        zone = self.table.split(".")[0]
        if zone in GATED_ZONES:
            if not self.built_by:
                raise ValueError("built_by: a base or topic table names the job module that builds it "
                                 "(e.g. jobs.base.population)")
            if not self.upstream:
                raise ValueError("upstream: a base or topic table names the tables it is built from")
            if self.written_by:
                raise ValueError("written_by is for quality and landing tables; a base or topic table has built_by")
            if not self.gate and (self.share_type != "none" or self.open_type != "none"):
                raise ValueError("a table without a gate (gate: false) is not shared or opened")
        else:
            if not self.gate:
                raise ValueError(f"gate is for base and topic tables; a {zone} table is never gated")
            if self.built_by or not self.written_by:
                raise ValueError(f"a {zone} table is written by jobs, not gated: give written_by (a list of job "
                                 "modules) and no built_by")
            if self.share_type != "none" or self.open_type != "none":
                raise ValueError(f"a {zone} table is not shared or opened (share_type and open_type none)")
        if self.requires is not None and not set(self.requires) <= set(self.upstream):
            raise ValueError(f"requires {sorted(set(self.requires) - set(self.upstream))} not in upstream")
        if self.schedule is not None:
            _check_cron(self.schedule)
        return self


class DutyModel(_Strict):
    duty: str = Field(min_length=1)
    resources: list[Annotated[str, Field(pattern=TABLE_ID)]] = []
    default: bool = False  # also produces every resource of the department that no other duty names


class DepartmentModel(_Strict):
    code: str = Field(pattern=DEPARTMENT_CODE)
    name: str = Field(min_length=1)
    town: str | None = None
    duties: list[DutyModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_default(self):
        if sum(u.default for u in self.duties) > 1:
            raise ValueError("at most one duty is the default (default: true)")
        return self


class DepartmentsModel(_Strict):
    departments: list[DepartmentModel] = Field(min_length=1)


def _check_cron(expr: str) -> None:
    fields = expr.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9*,/\-]+", f) for f in fields):
        raise ValueError(f"schedule '{expr}' is not a cron expression with five fields (e.g. '30 0 * * *')")


# ------------------------------------------------------------------ what the code reads

@dataclass(frozen=True)
class SourceColumn:
    name: str
    type: str
    required: bool = False
    title: str = ""
    pii: bool = False
    checks: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    normalize: bool = False  # full-width -> half-width and stray spaces removed, reported as findings


@dataclass(frozen=True)
class SourceContract:
    source: str
    title: str
    department: str
    department_code: str
    domain: str
    format: str
    encoding: str
    update_cycle: str
    record_key: str
    entity_key: str
    columns: tuple[SourceColumn, ...]
    path: str = ""
    # rows with the same unique key in one file are duplicates (default: the entity key alone)
    unique_key: tuple[str, ...] = ()
    # columns computed from the file's columns before building (name -> Spark SQL expression)
    derived_columns: dict = field(default_factory=dict)
    # which of an entity's rows in a file describes it best (Spark SQL expression, smallest first)
    entity_order: str = ""
    # "rows": landed row by row by jobs/landing/ingest.py; "readings": high-volume sensor readings that
    # jobs/base/iot_reading.py lands per delivery day (docs/spatial_iot.md)
    loader: str = "rows"
    # where the coordinates are and in which system (docs/spatial_iot.md): {lon, lat, crs},
    # {lon, lat, crs_column} (each row names its system) or {column, crs} (geometry text, read by the job
    # that builds the table: GeoJSON for the boundaries, WKT for the bus routes)
    geometry: dict = field(default_factory=dict)
    # how the department delivers: {"mode": "changes"|"snapshot", "op_column", "insert", "update",
    # "delete"}; {} = every file adds rows (the newest row of an entity describes it)
    delivery: dict = field(default_factory=dict)
    # checks of each delivery against the last ones (HistoryChecksModel as a dict; {} = none)
    history_checks: dict = field(default_factory=dict)
    # what a field holding NUL or another C0 control character (except tab) does: "quarantine" the row
    # (default) or "clean" the characters away and keep it (lake.hostile)
    control_characters: str = "quarantine"
    # the deregistration date checked against the status and establishment date at ingest
    # ({"date", "status", "established"}; {} = none)
    deregistration: dict = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def snapshot(self) -> bool:
        return self.delivery.get("mode") == "snapshot"

    @property
    def op_column(self) -> str:
        return self.delivery.get("op_column") or ""

    @property
    def entity_key_optional(self) -> bool:
        return not self.column(self.entity_key).required

    def column(self, name: str) -> SourceColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True)
class TableColumn:
    name: str
    type: str
    title: str = ""
    authority: str = ""  # exactly one authoritative source (一数一源), or "derived"
    fallback: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict)  # source -> column name in that source
    derive: str = ""  # expression name used when authority and fallbacks are empty
    cross_check: bool = False
    pii: bool = False
    grade: int | None = None  # the column's grade (DB11/T 1918) when it differs from the table's
    protect: str = ""  # how it is protected when shared at grade 3-4 (PROTECTIONS; "" = excluded)
    length: int | None = None  # maximum length (catalogue data item)


@dataclass(frozen=True)
class TableContract:
    table: str  # "<zone>.<name>"
    title: str
    description: str
    grain: str
    key: tuple[str, ...]
    owner: str
    domain: str
    grade: int
    share_type: str
    share_grants: tuple[str, ...]
    share_condition: str
    open_type: str
    update_cycle: str
    columns: tuple[TableColumn, ...]
    expectations: tuple[dict, ...]
    open_dataset: dict = field(default_factory=dict)
    path: str = ""
    cross_rules: tuple[str, ...] = ()  # rules across columns, implemented by the built_by module's CROSS_RULES
    built_by: str = ""  # the job module that builds the table (base and topic)
    written_by: tuple[str, ...] = ()  # the job modules that write it (quality and landing tables)
    upstream: tuple[str, ...] = ()  # tables it is built from (raw.<source>, base.*, topic.*)
    requires: tuple[str, ...] = ()  # upstream tables that must exist before it can be built
    schedule: str = ""  # a cron expression when built on a clock; "" = when an upstream table changes
    partition_by: str = ""  # published per partition of this column (a key column)
    gate: bool = True  # False: written by its job without a GX gate (checked row by row instead)
    sandbox: dict = field(default_factory=dict)  # {k: ...}: queryable in the sandbox (opendata/sandbox.py)
    open_condition: str = ""  # 开放条件 (catalogue)

    @property
    def zone(self) -> str:
        return self.table.split(".")[0]

    @property
    def name(self) -> str:
        return self.table.split(".")[1]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def built(self) -> bool:
        """A base or topic table: built by one job module (``built_by``) from its upstream tables."""
        return self.zone in GATED_ZONES

    @property
    def gated(self) -> bool:
        """Published through a GX gate (every base and topic table but those with ``gate: false``)."""
        return self.built and self.gate

    def column(self, name: str) -> TableColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


# ------------------------------------------------------------------ loading

def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ContractError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: expected a mapping at the top level")
    return data


def _errors(path: Path, e: ValidationError, data: dict) -> ContractError:
    """One line per problem: ``file: columns[3] (name: gender).pi: unknown key``."""
    lines = []
    for err in e.errors():
        loc = list(err["loc"])
        where, node = [], data
        for part in loc:
            if isinstance(part, int) and isinstance(node, list) and part < len(node):
                node = node[part]
                label = f"[{part}]"
                if isinstance(node, dict) and "name" in node:
                    label = f"[{part}] ({node['name']})"
                where.append(label)
            elif isinstance(node, dict) and part in node:
                node = node[part]
                where.append(f".{part}")
            elif isinstance(part, str) and part in ("not_null", "unique", "compound_unique", "regex", "in_set",
                                                     "between", "row_count_between", "function-after[_one()]"):
                continue  # pydantic's union tag, not a key of the file
            elif isinstance(part, str) and (part.startswith("literal[") or part == "GeneraliseRule"):
                continue  # a member of the union a de-identification rule is (keep/drop/... or {generalise: ...})
            else:
                where.append(f".{part}")
        key = "".join(where).lstrip(".") or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt? the schema is in lake/contracts.py)"
        elif err["type"] == "missing":
            msg = "missing required key"
        elif err["type"] in ("literal_error", "enum", "string_pattern_mismatch", "int_parsing", "bool_parsing",
                             "greater_than_equal", "less_than_equal") and "input" in err:
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{key}: {msg}")
    return ContractError(f"{path}: " + "; ".join(dict.fromkeys(lines)))


def _validate(model, path: Path, data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _errors(path, e, data) from None


def _allowed(values: list[str] | None, ref: str | None, path: Path, name: str) -> tuple[str, ...]:
    if values is not None and ref is not None:
        raise ContractError(f"{path}: column '{name}' has both allowed and allowed_from; give one")
    if ref is not None:
        try:
            return tuple(str(v) for v in REF.value_set(ref))
        except KeyError:
            raise ContractError(f"{path}: column '{name}': allowed_from '{ref}' is not a reference set; known: "
                                f"{', '.join(REF.value_set_names)}") from None
    return tuple(values or ())


def parse_source(path: Path) -> SourceContract:
    d = _load_yaml(path)
    m = _validate(SourceModel, path, d)
    cols = tuple(SourceColumn(name=c.name, type=c.type, required=c.required, title=c.title, pii=c.pii,
                              checks=tuple(c.checks), allowed=_allowed(c.allowed, c.allowed_from, path, c.name),
                              normalize=c.normalize) for c in m.columns)
    names = [c.name for c in cols]
    if len(set(names)) != len(names):
        raise ContractError(f"{path}: column names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    sc = SourceContract(
        source=m.source, title=m.title, department=m.department, department_code=m.department_code,
        domain=m.domain, format=m.format, encoding=m.encoding, update_cycle=m.update_cycle,
        record_key=m.record_key, entity_key=m.entity_key, columns=cols, path=str(path),
        unique_key=tuple(m.unique_key or [m.entity_key]), derived_columns=dict(m.derived_columns),
        entity_order=m.entity_order, loader=m.loader, geometry=_parse_geometry(m.geometry, names, path),
        delivery=m.delivery.model_dump() if m.delivery else {},
        history_checks=m.history_checks.model_dump() if m.history_checks else {},
        control_characters=m.control_characters,
        deregistration=m.deregistration.model_dump() if m.deregistration else {},
    )
    for role, c in sc.deregistration.items():
        if c is not None and c not in names:
            raise ContractError(f"{path}: deregistration.{role} names column '{c}', which is not among the columns")
        if c is not None and role != "status" and next(x.type for x in cols if x.name == c) != "date":
            raise ContractError(f"{path}: deregistration.{role} column '{c}' must be of type date")
    if sc.op_column and sc.op_column in names:
        raise ContractError(f"{path}: delivery.op_column '{sc.op_column}' must not be one of the columns")
    for c in (sc.history_checks.get("columns") or {}):
        if c not in names:
            raise ContractError(f"{path}: history_checks.columns names column '{c}', which is not among the columns")
    if sc.source != path.stem:
        raise ContractError(f"{path}: source '{sc.source}' must equal the file name '{path.stem}'")
    for k in (sc.record_key, sc.entity_key, *sc.unique_key):
        if k not in sc.column_names:
            raise ContractError(f"{path}: key column '{k}' is not among the columns")
    return sc


def _parse_geometry(g, column_names: list[str], path: Path) -> dict:
    """A source's ``geometry:`` mapping, checked: the named columns exist, the coordinate system is
    one of ``lake.geo.CRS`` (stored in its canonical spelling)."""
    if not g:
        return {}
    from lake.geo import CRS, canonical_crs

    forms = ({"lon", "lat", "crs"}, {"lon", "lat", "crs_column"}, {"column", "crs"})
    if set(g) not in forms:
        raise ContractError(f"{path}: geometry has keys {sorted(g)}; expected {{lon, lat, crs}}, "
                            "{lon, lat, crs_column} or {column, crs}")
    out = {k: str(v) for k, v in g.items()}
    for k in ("lon", "lat", "crs_column", "column"):
        if k in out and out[k] not in column_names:
            raise ContractError(f"{path}: geometry.{k} names column '{out[k]}', which is not among the columns")
    if "crs" in out:
        try:
            out["crs"] = canonical_crs(out["crs"])
        except ValueError:
            raise ContractError(f"{path}: geometry.crs '{out['crs']}' is not one of {', '.join(CRS)}") from None
    return out


def substitute(text: str, where: str) -> str:
    """``text`` with every ``${name}`` replaced by the reference value (``${district}`` -> 110115)."""
    subs = REF.substitutions

    def one(m: re.Match) -> str:
        if m.group(1) not in subs:
            raise ContractError(f"{where}: unknown substitution ${{{m.group(1)}}}; known: "
                                + ", ".join(f"${{{k}}}" for k in subs))
        return subs[m.group(1)]

    return re.sub(r"\$\{(\w+)\}", one, text)


def _expectation(e, path: Path, columns: list[str]) -> dict:
    """The expectation as the gate reads it: reference sets expanded, ``${name}`` substituted."""
    out = e.model_dump(exclude_none=True, exclude_unset=True)
    out["type"] = e.type
    for c in [out.get("column"), *(out.get("columns") or []), (out.get("when") or {}).get("column")]:
        if c is not None and c not in columns:
            raise ContractError(f"{path}: expectation {e.type} names column '{c}', which is not among the columns")
    if "values_from" in out:
        try:
            out["values"] = REF.value_set(out.pop("values_from"))
        except KeyError:
            raise ContractError(f"{path}: expectation {e.type}({out.get('column')}): values_from is not a reference "
                                f"set; known: {', '.join(REF.value_set_names)}") from None
    if "regex" in out:
        out["regex"] = substitute(out["regex"], f"{path}: expectation regex({out.get('column')})")
    return out


def parse_table(path: Path) -> TableContract:
    d = _load_yaml(path)
    m = _validate(TableModel, path, d)
    cols = tuple(TableColumn(name=c.name, type=c.type, title=c.title, authority=c.authority, fallback=tuple(c.fallback),
                             sources=dict(c.sources), derive=c.derive, cross_check=c.cross_check, pii=c.pii,
                             grade=c.grade, protect=c.protect or "", length=c.length) for c in m.columns)
    names = [c.name for c in cols]
    if len(set(names)) != len(names):
        raise ContractError(f"{path}: column names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    od = m.open_dataset.model_dump(exclude_none=True, exclude_unset=True) if m.open_dataset else {}
    if m.open_dataset and m.open_dataset.geojson:
        od["geojson"] = m.open_dataset.geojson.model_dump(exclude_none=True, exclude_unset=True)
    if m.open_dataset:
        od["chart"] = m.open_dataset.chart.model_dump(exclude_none=True, exclude_unset=True)
        od["deidentify"] = {c: r if isinstance(r, str) else r.model_dump(by_alias=True, exclude_none=True)
                            for c, r in m.open_dataset.deidentify.items()}
        for key in ("kind", "k", "max_suppression"):  # defaults spelt out: the open side reads them
            od[key] = getattr(m.open_dataset, key)
    tc = TableContract(
        table=m.table, title=m.title, description=m.description, grain=m.grain, key=tuple(m.key), owner=m.owner,
        domain=m.domain, grade=m.grade, share_type=m.share_type, share_grants=tuple(m.share_grants),
        share_condition=m.share_condition, open_type=m.open_type, update_cycle=m.update_cycle, columns=cols,
        expectations=tuple(_expectation(e, path, names) for e in m.expectations), open_dataset=od, path=str(path),
        cross_rules=tuple(m.cross_rules), built_by=m.built_by or "", written_by=tuple(m.written_by),
        upstream=tuple(m.upstream), requires=tuple(m.requires if m.requires is not None else m.upstream),
        schedule=m.schedule or "", partition_by=m.partition_by or "", gate=m.gate, open_condition=m.open_condition,
        sandbox=m.sandbox.model_dump() if m.sandbox else {},
    )
    if tc.name != path.stem.split("_", 1)[1] or path.stem.split("_", 1)[0] != tc.zone:
        raise ContractError(f"{path}: table '{tc.table}' must be in the file {tc.zone}_{tc.name}.yaml")
    for k in tc.key:
        if k not in names:
            raise ContractError(f"{path}: key column '{k}' is not among the columns")
    if tc.partition_by and tc.partition_by not in tc.key:
        raise ContractError(f"{path}: partition_by '{tc.partition_by}' must be a key column {list(tc.key)}")
    if tc.open_type != "none" and not tc.open_dataset:
        raise ContractError(f"{path}: open_type {tc.open_type} needs an open_dataset (id, title, description)")
    if tc.open_dataset:
        _check_open_protection(tc, path)
    if tc.sandbox and tc.zone not in GATED_ZONES:
        raise ContractError(f"{path}: sandbox is for base and topic tables")
    if tc.share_type == "conditional" and not tc.share_grants:
        raise ContractError(f"{path}: conditional sharing needs share_grants (the departments it is granted to)")
    for c in od.get("count_columns", []):
        if c not in names:
            raise ContractError(f"{path}: open_dataset.count_columns names column '{c}', which is not among the columns")
    spec = od.get("geojson")
    if spec:
        missing = [c for c in (spec.get("points") or [spec.get("key", "town_code")]) if c not in names]
        if missing:
            raise ContractError(f"{path}: open_dataset.geojson names column(s) {missing}, which are not among the columns")
    for c in cols:
        if c.authority and not tc.built:
            raise ContractError(f"{path}: column '{c.name}': authority is for base and topic tables")
    _check_grades(tc, path)
    return tc


def _check_open_protection(tc: TableContract, path: Path) -> None:
    """What an opened table's ``open_dataset`` must say to protect the people behind it: an aggregate
    opens no personal column; a record-level dataset has a de-identification rule for every column
    (a personal column's rule is never ``keep``), names its quasi-identifiers and sensitive attributes
    among the columns it publishes, and its generalisation levels fit the columns' types."""
    od = tc.open_dataset
    where = f"{path}: open_dataset"
    pii = [c.name for c in tc.columns if c.pii]
    if od["kind"] == "aggregate":
        if tc.open_type != "none" and pii:
            raise ContractError(f"{path}: a table with personal columns cannot be opened as an aggregate: it would open "
                                f"the personal column(s) {pii} (pii: true); open_type must be none, or publish it as "
                                "kind: record with a de-identification rule for each (drop, pseudonymise, generalise or suppress)")
        for key in ("deidentify", "quasi_identifiers", "sensitive"):
            if od.get(key):
                raise ContractError(f"{where}.{key} is for record-level datasets (kind: record)")
        return
    rules = od["deidentify"]
    names = tc.column_names
    unknown = sorted(set(rules) - set(names))
    if unknown:
        raise ContractError(f"{where}.deidentify names column(s) {unknown}, which are not among the columns")
    missing = [c for c in names if c not in rules]
    if missing:
        raise ContractError(f"{where}.deidentify has no rule for column(s) {missing}: a record-level dataset names "
                            f"one rule per column ({', '.join(COLUMN_ACTIONS)} or {{generalise: [...]}})")
    opened = [c for c in pii if rules[c] == "keep"]
    if opened:
        raise ContractError(f"{where} would open the personal identifier column(s) {opened} (pii: true): give each "
                            "a de-identification rule (drop, pseudonymise, generalise or suppress), not keep")
    if od.get("count_columns"):
        raise ContractError(f"{where}.count_columns is for aggregates; a record-level dataset is protected by k")
    types = {c.name: c.type for c in tc.columns}
    out = []
    for c in names:
        r = rules[c]
        if r == "drop":
            continue
        if isinstance(r, dict):
            levels = r["generalise"]
            kinds = {("date" if lv in ("month", "quarter", "year") else "age" if lv.startswith("age_") else
                      "grid" if lv.startswith("grid_") else "area" if lv in ("town", "district") else "*") for lv in levels}
            kinds.discard("*")
            if len(kinds) > 1:
                raise ContractError(f"{where}.deidentify.{c}: levels {levels} mix kinds of generalisation")
            kind = next(iter(kinds), "*")
            if kind in ("date", "age") and types[c] not in ("date", "timestamp"):
                raise ContractError(f"{where}.deidentify.{c}: {levels[0]} needs a date column; '{c}' is {types[c]}")
            if kind == "area" and types[c] != "string":
                raise ContractError(f"{where}.deidentify.{c}: {levels[0]} needs a text column (a town or an address)")
            if kind == "grid":
                if not r.get("lat") or r["lat"] not in names:
                    raise ContractError(f"{where}.deidentify.{c}: grid levels need 'lat', the latitude column")
            elif r.get("lat"):
                raise ContractError(f"{where}.deidentify.{c}: 'lat' is for grid levels")
            if r.get("at") is not None:
                if kind != "age":
                    raise ContractError(f"{where}.deidentify.{c}: 'at' is for age levels")
                if r["at"] not in names or types[r["at"]] not in ("date", "timestamp"):
                    raise ContractError(f"{where}.deidentify.{c}: 'at' names '{r['at']}', which is not a date column")
            out.append(r.get("as") or c)
        else:
            out.append(c)
    if len(set(out)) != len(out):
        raise ContractError(f"{where}.deidentify: published column names repeat: {sorted({o for o in out if out.count(o) > 1})}")
    qi = od.get("quasi_identifiers")
    if qi is None:
        raise ContractError(f"{where}: a record-level dataset names its quasi_identifiers (column names as in "
                            "data.csv; [] when no row describes a person)")
    for key, cols in (("quasi_identifiers", qi), ("sensitive", od.get("sensitive", []))):
        bad = [c for c in cols if c not in out]
        if bad:
            raise ContractError(f"{where}.{key} names {bad}, which data.csv does not have (it has {out})")
    both = sorted(set(qi) & set(od.get("sensitive", [])))
    if both:
        raise ContractError(f"{where}: {both} both a quasi-identifier and a sensitive attribute")
    if od.get("l") is not None and not od.get("sensitive"):
        raise ContractError(f"{where}.l needs sensitive: the attribute(s) l-diversity is measured on")
    if od.get("sensitive") and od.get("l") is None:
        od["l"] = 2
    if od.get("l") and od["l"] > od["k"]:
        raise ContractError(f"{where}: l ({od['l']}) cannot exceed k ({od['k']})")
def _check_grades(tc: TableContract, path: Path) -> None:
    """分级 (DB11/T 1918): a table is graded by its most sensitive column; a personal column (pii) is
    at least grade 3, so that it is never shared in clear by default (sharing/masks.py)."""
    for c in tc.columns:
        g = c.grade or tc.grade
        if c.grade is not None and c.grade > tc.grade:
            raise ContractError(f"{path}: column '{c.name}' has grade {c.grade} above the table's grade {tc.grade}; "
                                "a table is graded by its most sensitive column")
        if c.pii and g < 3:
            raise ContractError(f"{path}: column '{c.name}' is personal (pii) but graded {g}; personal columns are "
                                "grade 3 or 4 (DB11/T 1918)")


@dataclass(frozen=True)
class Duty:
    duty: str
    resources: tuple[str, ...]  # raw.<source>, base.<name>, topic.<name>


@dataclass(frozen=True)
class Department:
    code: str  # 11-digit department code: the identity sharing tokens are issued to
    name: str
    duties: tuple[Duty, ...]
    town: str = ""  # a town government's town (row filters of its grants)


@dataclass(frozen=True)
class Contracts:
    sources: dict[str, SourceContract]
    tables: dict[str, TableContract]
    departments: dict[str, Department] = field(default_factory=dict)  # code -> department (departments.yaml)

    def department(self, code: str) -> Department:
        if code not in self.departments:
            raise ContractError(f"unknown department code '{code}'; registered departments are listed in "
                                "contracts/departments.yaml")
        return self.departments[code]

    def department_named(self, name: str) -> Department:
        for d in self.departments.values():
            if d.name == name:
                return d
        raise ContractError(f"unknown department '{name}' (contracts/departments.yaml)")

    def duties_of(self, resource: str) -> list[tuple[Department, Duty]]:
        """The duties (职责) that produce ``resource`` (``raw.<source>`` or a table id)."""
        return [(d, u) for d in self.departments.values() for u in d.duties if resource in u.resources]

    def source(self, name: str) -> SourceContract:
        if name not in self.sources:
            raise ContractError(f"unknown source '{name}'; known sources: {', '.join(sorted(self.sources))}")
        return self.sources[name]

    def table(self, name: str) -> TableContract:
        if name not in self.tables:
            raise ContractError(f"unknown table '{name}'; known tables: {', '.join(sorted(self.tables))}")
        return self.tables[name]

    def sources_of(self, domain: str) -> list[SourceContract]:
        return [s for s in self.sources.values() if s.domain == domain]

    def row_sources(self) -> list[str]:
        """Sources landed row by row by jobs/landing/ingest.py (everything but the sensor readings)."""
        return sorted(s.source for s in self.sources.values() if s.loader == "rows")

    def built_tables(self) -> list[TableContract]:
        """The base and topic tables (each built by a job module from its upstream tables), by id."""
        return sorted((t for t in self.tables.values() if t.built), key=lambda t: t.table)

    def published_tables(self) -> list[str]:
        """The built tables that are shared or opened (what publication reads; their change triggers it)."""
        return [t.table for t in self.built_tables() if t.share_type != "none" or t.open_type != "none"]


@lru_cache(maxsize=8)
def load(contracts_dir: str) -> Contracts:
    base = Path(contracts_dir)
    if not base.is_dir():
        raise ContractError(f"contracts folder {base} does not exist")
    sources = {p.stem: parse_source(p) for p in sorted((base / "sources").glob("*.yaml"))}
    tables = {}
    for p in sorted((base / "tables").glob("*.yaml")):
        t = parse_table(p)
        tables[t.table] = t
    _validate_authorities(sources, tables)
    _validate_flow(sources, tables)
    departments = _load_departments(base / "departments.yaml", sources, tables)
    return Contracts(sources=sources, tables=tables, departments=departments)


def _load_departments(path: Path, sources: dict, tables: dict) -> dict[str, Department]:
    """``departments.yaml``: the departments, their codes and duties, checked against the contracts:
    codes and names unique; every source's department (name and code) registered; every base/topic
    table's owner registered; every share grant a registered code; every source and base/topic table
    named by exactly one duty, of the department that provides it (duty -> data)."""
    if not path.is_file():
        raise ContractError(f"{path} is missing: the departments, their codes and duties (职责)")
    m = _validate(DepartmentsModel, path, _load_yaml(path))
    out: dict[str, Department] = {}
    names: dict[str, str] = {}
    for d in m.departments:
        if d.code in out:
            raise ContractError(f"{path}: department code {d.code} appears twice")
        if d.name in names:
            raise ContractError(f"{path}: department name {d.name} appears twice ({names[d.name]}, {d.code})")
        if d.town is not None and d.town not in REF.district.towns:
            raise ContractError(f"{path}: department {d.code}: town '{d.town}' is not a town of the district "
                                "(contracts/reference.yaml)")
        names[d.name] = d.code
        out[d.code] = Department(code=d.code, name=d.name, town=d.town or "",
                                 duties=tuple(Duty(u.duty, tuple(u.resources)) for u in d.duties))
    produced: dict[str, str] = {}
    for d in out.values():
        for u in d.duties:
            for r in u.resources:
                zone, name = r.split(".", 1)
                if zone == "raw":
                    if name not in sources:
                        raise ContractError(f"{path}: department {d.code} duty '{u.duty}' names unknown source '{r}'")
                    if sources[name].department_code != d.code:
                        raise ContractError(f"{path}: department {d.code} duty '{u.duty}' names {r}, which "
                                            f"{sources[name].department_code} delivers ({sources[name].path})")
                elif r not in tables or not tables[r].built:
                    raise ContractError(f"{path}: department {d.code} duty '{u.duty}' names '{r}', which is not a "
                                        "base or topic table with a contract")
                elif tables[r].owner != d.name:
                    raise ContractError(f"{path}: department {d.code} duty '{u.duty}' names {r}, whose owner is "
                                        f"{tables[r].owner} ({tables[r].path})")
                if r in produced:
                    raise ContractError(f"{path}: {r} is named by two duties ({produced[r]}; {d.code} '{u.duty}')")
                produced[r] = f"{d.code} '{u.duty}'"
    defaults = {src.code: [u for u in src.duties if u.default] for src in m.departments}
    extra: dict[tuple[str, str], list[str]] = {}  # (code, duty) -> resources the default duty produces

    def attach(resource: str, code: str, where: str) -> None:
        if resource in produced:
            return
        if not defaults.get(code):
            raise ContractError(f"{path}: {resource} is named by no duty of department {code} and the department has "
                                f"no default duty (default: true) ({where})")
        extra.setdefault((code, defaults[code][0].duty), []).append(resource)

    for s in sources.values():
        if s.department_code not in out:
            raise ContractError(f"{s.path}: department_code {s.department_code} is not registered in {path}")
        if out[s.department_code].name != s.department:
            raise ContractError(f"{s.path}: department '{s.department}' is registered as "
                                f"'{out[s.department_code].name}' under {s.department_code} in {path}")
        attach(f"raw.{s.source}", s.department_code, s.path)
    for t in sorted(tables.values(), key=lambda t: t.table):
        if t.built and t.owner not in names:
            raise ContractError(f"{t.path}: owner '{t.owner}' is not a registered department ({path})")
        if t.built:
            attach(t.table, names[t.owner], t.path)
        for g in t.share_grants:
            if g not in out:
                raise ContractError(f"{t.path}: share_grants names department code {g}, which is not registered "
                                    f"in {path}")
    for (code, duty), resources in extra.items():
        d = out[code]
        out[code] = Department(code=d.code, name=d.name, town=d.town, duties=tuple(
            Duty(u.duty, u.resources + tuple(resources)) if u.duty == duty else u for u in d.duties))
    return out


def _validate_authorities(sources: dict, tables: dict) -> None:
    """一数一源: every base column names exactly one authoritative source that really has the column.
    A base table without a gate (the sensor readings) holds each source's own rows as delivered, with
    the source on every row (``_source``): there is no second copy of a value to choose from."""
    for t in tables.values():
        if t.zone != "base" or not t.gate:
            continue
        for c in t.columns:
            if not c.authority:
                raise ContractError(f"{t.path}: column '{c.name}' has no authoritative source")
            if c.authority == "derived":
                if not c.derive:
                    raise ContractError(f"{t.path}: derived column '{c.name}' needs 'derive'")
                continue
            for s in (c.authority, *c.fallback):
                if s not in sources:
                    raise ContractError(f"{t.path}: column '{c.name}' names unknown source '{s}'")
                src_col = c.sources.get(s, c.name)
                if src_col not in sources[s].column_names and src_col not in sources[s].derived_columns:
                    raise ContractError(f"{t.path}: column '{c.name}': source '{s}' has no column '{src_col}'")
            if c.authority in c.fallback:
                raise ContractError(f"{t.path}: column '{c.name}' lists its authority '{c.authority}' as a fallback")


def _validate_flow(sources: dict, tables: dict) -> None:
    """Every upstream names a known source (``raw.<source>``) or table, without cycles; the raw table
    of every authority and fallback a table's columns name is upstream of it (directly or through an
    upstream table: a POI's town comes from the boundaries through base.admin_boundary)."""
    for t in tables.values():
        for u in t.upstream:
            zone, name = u.split(".", 1)
            known = name in sources if zone == "raw" else u in tables
            if not known:
                raise ContractError(f"{t.path}: upstream '{u}' is neither a source (raw.<source>) nor a table with a "
                                    "contract")

    def reach(table: str, seen: tuple = ()) -> set:
        if table in seen:
            raise ContractError(f"{tables[table].path}: upstream tables form a cycle: {' -> '.join((*seen, table))}")
        out = set()
        for u in tables[table].upstream:
            out.add(u)
            if u in tables:
                out |= reach(u, (*seen, table))
        return out

    for t in tables.values():
        upstream = reach(t.table)
        named = {f"raw.{s}" for c in t.columns for s in (c.authority, *c.fallback) if s and s != "derived"}
        missing = sorted(named - upstream)
        if missing:
            raise ContractError(f"{t.path}: upstream lacks {missing}, the sources its columns take values from")
