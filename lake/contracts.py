"""Data contracts: the single source of truth for every source and table.

A source contract (``contracts/sources/*.yaml``) says how a department's file looks: columns, types,
encoding, update cycle, which checks each column gets. A table contract (``contracts/tables/*.yaml``)
says what a base or topic table is: grain, keys, the authoritative source of each column
(一数一源), grade, share and open type, and its quality expectations. Quality suites, catalogue entries
and share grants are generated from these files, never written twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

SOURCE_TYPES = {"string", "date", "int", "long", "double"}
FORMATS = {"csv", "jsonl", "geojson"}
CROSS_RULES = {"death_not_propagated", "deregistered_active_in_tax"}
UPDATE_CYCLES = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}
CHECKS = {"cn_id", "cn_uscc", "cn_phone", "city_code"}
LOADERS = {"rows", "readings"}
SHARE_TYPES = {"unconditional", "conditional", "none"}
OPEN_TYPES = {"unconditional", "directed", "none"}


class ContractError(ValueError):
    """A contract file is wrong; the message names the file and the field."""


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
    # "rows": landed row by row by jobs/ingest.py; "readings": high-volume sensor readings that
    # jobs/iot.py lands per delivery day (docs/spatial_iot.md)
    loader: str = "rows"
    # where the coordinates are and in which system (docs/spatial_iot.md): {lon, lat, crs},
    # {lon, lat, crs_column} (each row names its system) or {column, crs} (GeoJSON geometry text)
    geometry: dict = field(default_factory=dict)
    # what a field holding NUL or another C0 control character (except tab) does: "quarantine" the row
    # (default) or "clean" the characters away and keep it (lake.hostile)
    control_characters: str = "quarantine"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

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
    cross_rules: tuple[str, ...] = ()  # rules across columns, implemented in jobs.build_base.CROSS_RULES

    @property
    def zone(self) -> str:
        return self.table.split(".")[0]

    @property
    def name(self) -> str:
        return self.table.split(".")[1]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ContractError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: expected a mapping at the top level")
    return data


def _req(data: dict, key: str, path: Path):
    if key not in data or data[key] in (None, ""):
        raise ContractError(f"{path}: missing required field '{key}'")
    return data[key]


def parse_source(path: Path) -> SourceContract:
    d = _load_yaml(path)
    cols = []
    for i, c in enumerate(_req(d, "columns", path)):
        name = _req(c, "name", path)
        typ = c.get("type", "string")
        if typ not in SOURCE_TYPES and not re.fullmatch(r"decimal\(\d+,\d+\)", str(typ)):
            raise ContractError(f"{path}: column '{name}' has unknown type '{typ}'")
        checks = tuple(c.get("checks", []) or [])
        bad = set(checks) - CHECKS
        if bad:
            raise ContractError(f"{path}: column '{name}' has unknown checks {sorted(bad)}; known: {sorted(CHECKS)}")
        cols.append(
            SourceColumn(
                name=name, type=typ, required=bool(c.get("required", False)), title=c.get("title", ""),
                pii=bool(c.get("pii", False)), checks=checks, allowed=tuple(str(a) for a in c.get("allowed", []) or []),
                normalize=bool(c.get("normalize", False)),
            )
        )
    sc = SourceContract(
        source=_req(d, "source", path), title=d.get("title", ""), department=_req(d, "department", path),
        department_code=str(d.get("department_code", "")), domain=_req(d, "domain", path),
        format=d.get("format", "csv"), encoding=d.get("encoding", "auto"), update_cycle=_req(d, "update_cycle", path),
        record_key=_req(d, "record_key", path), entity_key=_req(d, "entity_key", path), columns=tuple(cols), path=str(path),
        unique_key=tuple(d.get("unique_key") or [d.get("entity_key")]),
        derived_columns={str(k): str(v) for k, v in (d.get("derived_columns") or {}).items()},
        entity_order=str(d.get("entity_order") or ""),
        loader=str(d.get("loader") or "rows"),
        geometry=_parse_geometry(d.get("geometry"), [c.name for c in cols], path),
        control_characters=str(d.get("control_characters") or "quarantine"),
    )
    if sc.control_characters not in ("quarantine", "clean"):
        raise ContractError(f"{path}: control_characters must be quarantine or clean, got '{sc.control_characters}'")
    if sc.source != path.stem:
        raise ContractError(f"{path}: source '{sc.source}' must equal the file name '{path.stem}'")
    if sc.format not in FORMATS:
        raise ContractError(f"{path}: format must be one of {sorted(FORMATS)}, got '{sc.format}'")
    if sc.loader not in LOADERS:
        raise ContractError(f"{path}: loader must be one of {sorted(LOADERS)}, got '{sc.loader}'")
    if sc.update_cycle not in UPDATE_CYCLES:
        raise ContractError(f"{path}: update_cycle must be one of {list(UPDATE_CYCLES)}, got '{sc.update_cycle}'")
    for k in (sc.record_key, sc.entity_key, *sc.unique_key):
        if k not in sc.column_names:
            raise ContractError(f"{path}: key column '{k}' is not among the columns")
    return sc


def _parse_geometry(g, column_names: list[str], path: Path) -> dict:
    """A source's ``geometry:`` mapping, checked: the named columns exist, the coordinate system is
    one of ``lake.geo.CRS`` (stored in its canonical spelling)."""
    if g in (None, {}):
        return {}
    from lake.geo import CRS, canonical_crs

    if not isinstance(g, dict):
        raise ContractError(f"{path}: geometry must be a mapping like {{lon: lon, lat: lat, crs: GCJ02}}")
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


def parse_table(path: Path) -> TableContract:
    d = _load_yaml(path)
    cols = []
    for c in _req(d, "columns", path):
        cols.append(
            TableColumn(
                name=_req(c, "name", path), type=c.get("type", "string"), title=c.get("title", ""),
                authority=c.get("authority", ""), fallback=tuple(c.get("fallback", []) or []),
                sources=dict(c.get("sources", {}) or {}), derive=c.get("derive", ""),
                cross_check=bool(c.get("cross_check", False)), pii=bool(c.get("pii", False)),
            )
        )
    tc = TableContract(
        table=_req(d, "table", path), title=_req(d, "title", path), description=d.get("description", ""),
        grain=_req(d, "grain", path), key=tuple(_req(d, "key", path)), owner=_req(d, "owner", path),
        domain=_req(d, "domain", path), grade=int(d.get("grade", 1)), share_type=_req(d, "share_type", path),
        share_grants=tuple(d.get("share_grants", []) or []), share_condition=d.get("share_condition", ""),
        open_type=d.get("open_type", "none"), update_cycle=_req(d, "update_cycle", path), columns=tuple(cols),
        expectations=tuple(d.get("expectations", []) or []), open_dataset=dict(d.get("open_dataset", {}) or {}),
        path=str(path), cross_rules=tuple(d.get("cross_rules", []) or []),
    )
    if tc.table.count(".") != 1 or tc.zone not in ("base", "topic"):
        raise ContractError(f"{path}: table must be 'base.<name>' or 'topic.<name>', got '{tc.table}'")
    unknown_rules = set(tc.cross_rules) - CROSS_RULES
    if unknown_rules:
        raise ContractError(f"{path}: unknown cross_rules {sorted(unknown_rules)}; known: {sorted(CROSS_RULES)}")
    if tc.share_type not in SHARE_TYPES:
        raise ContractError(f"{path}: share_type must be one of {sorted(SHARE_TYPES)}")
    if tc.open_type not in OPEN_TYPES:
        raise ContractError(f"{path}: open_type must be one of {sorted(OPEN_TYPES)}")
    if tc.open_type != "none" and any(c.pii for c in tc.columns):
        raise ContractError(f"{path}: a table with personal columns cannot be opened (open_type must be none)")
    for k in tc.key:
        if k not in tc.column_names:
            raise ContractError(f"{path}: key column '{k}' is not among the columns")
    _check_open_geojson(path, tc)
    return tc


def _check_open_geojson(path: Path, tc: TableContract) -> None:
    """``open_dataset.geojson`` is ``{points: [lon, lat]}`` (two columns of the table) or
    ``{polygons_from: <zone>.<table>, key: <column>}``."""
    spec = tc.open_dataset.get("geojson")
    if spec is None:
        return
    if isinstance(spec, dict) and set(spec) == {"points"} and isinstance(spec["points"], list) and len(spec["points"]) == 2:
        missing = [c for c in spec["points"] if c not in tc.column_names]
    elif isinstance(spec, dict) and set(spec) <= {"polygons_from", "key"} and "polygons_from" in spec:
        missing = [c for c in [spec.get("key", "town_code")] if c not in tc.column_names]
    else:
        raise ContractError(f"{path}: open_dataset.geojson must be {{points: [lon, lat]}} or "
                            f"{{polygons_from: base.admin_boundary, key: town_code}}, got {spec!r}")
    if missing:
        raise ContractError(f"{path}: open_dataset.geojson names column(s) {missing}, which are not among the columns")


@dataclass(frozen=True)
class Contracts:
    sources: dict[str, SourceContract]
    tables: dict[str, TableContract]

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
        """Sources landed row by row by jobs/ingest.py (everything but the sensor readings)."""
        return sorted(s.source for s in self.sources.values() if s.loader == "rows")


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
    return Contracts(sources=sources, tables=tables)


def _validate_authorities(sources: dict, tables: dict) -> None:
    """一数一源: every base column names exactly one authoritative source that really has the column."""
    for t in tables.values():
        if t.zone != "base":
            continue
        for c in t.columns:
            if not c.authority:
                raise ContractError(f"{t.path}: column '{c.name}' has no authoritative source")
            if not isinstance(c.authority, str):
                raise ContractError(f"{t.path}: column '{c.name}' names {len(c.authority)} authoritative sources "
                                    f"{list(c.authority)}; exactly one is allowed (一数一源), put the others in 'fallback'")
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
