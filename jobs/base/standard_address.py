"""The standard place-name/address library (标准地名地址库): ``base.standard_address`` and the links of
every address record in the lake to it.

1. Address records: the newest row per record key of the address sources (``psb_doorplates``, the
   authority; ``zjw_buildings`` and ``samr_geocoded``, fallbacks for coordinates; ``ghzrzy_poi``) and
   the golden records of ``base.population`` and ``base.legal_entity`` (their ``address``, keyed by the
   table key, traced to the department row through ``_lineage``).
2. Every **distinct** (address text, town column) pair is read once by ``lake.address.parse`` inside
   ``mapInPandas`` and joined back: 1.81 M people live at far fewer addresses.
3. The library is the set of door keys (``town|road|number|building``) of the door plates of the
   police (门楼牌, the legal basis of an address). A plate's key comes from its own component columns
   (town, road, number, building), else from its address text. Coordinates are converted to WGS-84
   from the system each source's contract declares (``lake.geo.to_wgs84``) and taken from the
   authority, else from the fallbacks in contract order (the smallest record key of the first
   source that has a point inside the district; a point outside only when there is no other);
   ``town_code`` is the unit of ``base.admin_boundary`` containing the point (NULL before that table
   exists or outside every unit); ``n_records`` and ``sources`` count the
   records of every source linked to the address. Published through the quality gate.
4. ``quality/address_links`` (``LINK_COLUMNS``): every record, its address code or the reason it is
   unmatched (``lake.address.REASONS``), match ``exact`` (the text already is the standard text),
   ``normalised`` or ``unmatched``, the unit containing the record's own point (``town_code``) and the
   department row the text came from; ``quality/address_match``: per source, records, matched, rate.
5. Findings, for the department that sent the row: ``address_unmatched`` for every unmatched record
   that has an address (a base table's record is reported on the department row its address came
   from); for the three address sources' own rows also ``duplicate_record`` (the contract's unique
   key earlier in the same file) and, once ``base.admin_boundary`` exists, ``point_outside_district``
   (the POIs' are jobs/spatial.py's).

The run id is a hash of the input table versions, the contracts and this code, so re-running with
the same inputs writes nothing new (the quality tables are replaced per ``run_id``; the published table
is unchanged and gets no new Delta version).
"""
from __future__ import annotations

import time
from functools import reduce
from pathlib import Path

import yaml
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lake import address as addr
from lake import contracts as contracts_mod
from lake import io, rules
from lake.contracts import Contracts, SourceContract
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings, gates

TABLE = "base.standard_address"
AUTHORITY = "psb_doorplates"
FALLBACKS = ("zjw_buildings", "samr_geocoded")
RAW_SOURCES = (AUTHORITY, *FALLBACKS, "ghzrzy_poi")
BASE_SOURCES = ("base.population", "base.legal_entity")
ADMIN_BOUNDARY = ("base", "admin_boundary")
LINKS = ("quality", "address_links")
MATCH = ("quality", "address_match")
STAGE = "address"
RULE = "address.unmatched"
DEFECT = "address_unmatched"
LINEAGE_TYPE = "struct<source:string,batch_id:string,file_sha256:string,row:long>"
LINK_COLUMNS = (  # origin_source/_file_sha256/_row/_batch_id: the department row the text came from
    "run_id string, source string, record_key string, address_text string, address_code string, "
    "match string, reason string, door_key string, town_code string, origin_source string, _file_sha256 string, "
    "_row long, _batch_id string"
)
MATCH_COLUMNS = "run_id string, source string, records long, matched long, match_rate double"
PARSED_SCHEMA = (
    "_text string, _hint string, p_town string, p_road string, p_number string, p_building string, "
    "p_unit string, p_room string, p_rest string, p_reason string, p_canonical string, p_door_text string, "
    "p_door_key string, p_code string, p_exact boolean"
)

# the derived columns of base.standard_address (contracts/tables/base_standard_address.yaml)
DERIVATIONS = {
    "count_address_links": "records of every source linked to the address in quality/address_links",
    "address_link_sources": "the sources of those records, sorted, comma-separated",
}


# ------------------------------------------------------------------ records

def _geometry(sc: SourceContract) -> dict:
    g = getattr(sc, "geometry", None)
    if g is None and sc.path:  # contracts older than the geometry field
        g = (yaml.safe_load(Path(sc.path).read_text(encoding="utf-8")) or {}).get("geometry")
    return dict(g or {})


def latest_rows(raw: DataFrame, record_key: str) -> DataFrame:
    """The newest batch's row per record key (the first such row in its file). Pure."""
    w = Window.partitionBy(record_key).orderBy(F.col("_ingested_at").desc(), F.col("_batch_id").desc(),
                                               F.col("_row").asc())
    return raw.where(F.col(record_key).isNotNull()).withColumn("_n", F.row_number().over(w)) \
        .where(F.col("_n") == 1).drop("_n")


def _digits_then(col: str, suffix: str) -> F.Column:
    """``col`` with ``suffix`` appended when it is only digits (3 -> 3号楼), else as it is."""
    v = F.trim(F.col(col).cast("string"))
    return F.when(v.rlike(r"^[0-9０-９]+$"), F.concat(v, F.lit(suffix))).otherwise(v)


def raw_records(raw: DataFrame, sc: SourceContract) -> DataFrame:
    """A raw address source as address records (``RECORD`` columns). Pure."""
    cols = sc.column_names
    if "address" not in cols:
        raise contracts_mod.ContractError(f"{sc.path}: source '{sc.source}' has no 'address' column")
    g = _geometry(sc)
    lon = F.col(g["lon"]).try_cast("double") if g.get("lon") else F.lit(None).cast("double")
    lat = F.col(g["lat"]).try_cast("double") if g.get("lat") else F.lit(None).cast("double")
    crs = (F.lit(g["crs"]) if g.get("crs") else F.col(g["crs_column"]) if g.get("crs_column")
           else F.lit(None)).cast("string")
    if sc.source == AUTHORITY and {"town", "road", "number"} <= set(cols):
        # the plate's own components, as text (parsed like any address, so aliases are undone)
        alt = F.when(F.col("road").isNotNull() & F.col("number").isNotNull(), F.concat_ws(
            "", F.col("town"), F.col("road"), _digits_then("number", "号"),
            *([_digits_then("building", "号楼")] if "building" in cols else [])))
    else:
        alt = F.lit(None)
    return latest_rows(raw, sc.record_key).select(
        F.lit(sc.source).alias("source"), F.col(sc.record_key).cast("string").alias("record_key"),
        F.col("address").cast("string").alias("address_text"),
        (F.col("town").cast("string") if "town" in cols else F.lit(None).cast("string")).alias("town_hint"),
        alt.cast("string").alias("alt_text"), lon.alias("lon"), lat.alias("lat"), crs.alias("crs"),
        F.lit(sc.source).alias("origin"), "_file_sha256", F.col("_row").cast("long").alias("_row"), "_batch_id")


def base_records(table: DataFrame, table_id: str, key: str) -> DataFrame:
    """A base table's ``address`` column as address records, traced through ``_lineage``. Pure."""
    lin = F.col("_lineage")["address"] if "_lineage" in table.columns else F.lit(None).cast(LINEAGE_TYPE)
    town = F.col("town").cast("string") if "town" in table.columns else F.lit(None).cast("string")
    return table.select(
        F.lit(table_id).alias("source"), F.col(key).cast("string").alias("record_key"),
        F.col("address").cast("string").alias("address_text"), town.alias("town_hint"),
        F.lit(None).cast("string").alias("alt_text"), F.lit(None).cast("double").alias("lon"),
        F.lit(None).cast("double").alias("lat"), F.lit(None).cast("string").alias("crs"),
        lin["source"].alias("origin"), lin["file_sha256"].alias("_file_sha256"),
        lin["row"].cast("long").alias("_row"), lin["batch_id"].alias("_batch_id"))


# ------------------------------------------------------------------ parsing and resolution

def _parse_batches(batches):
    import pandas as pd

    for pdf in batches:
        texts = pdf["_text"].tolist()
        hints = [h or None for h in pdf["_hint"].tolist()]
        res = addr.parse_many(texts, hints)
        out = {"_text": pdf["_text"], "_hint": pdf["_hint"]}
        for f in addr.PARSED_FIELDS:
            name = "p_code" if f == "address_code" else f"p_{f}"
            out[name] = res[f]
        yield pd.DataFrame(out)


def parse_distinct(pairs: DataFrame) -> DataFrame:
    """``pairs`` (``_text``, ``_hint``; the hint '' when there is none) read once per distinct pair."""
    return pairs.where(F.col("_text").isNotNull()).distinct().mapInPandas(_parse_batches, PARSED_SCHEMA)


def resolve(records: DataFrame) -> DataFrame:
    """Records with their parse: ``door_key`` and the components it was built from, ``code``,
    ``exact``, ``p_reason``. The authority's plates take their key from their component columns
    (``alt_text``) when those can be read. Pure; ``records`` is read three times (persist it)."""
    records = records.withColumn("_hint", F.coalesce(F.col("town_hint"), F.lit("")))
    own = parse_distinct(records.select(F.col("address_text").alias("_text"), "_hint")) \
        .withColumnRenamed("_text", "address_text")
    # only the plates have component text (a few percent of the records): parsed on their own and
    # broadcast, so that the other records are neither shuffled nor skewed on a NULL join key
    alt = parse_distinct(records.where(F.col("alt_text").isNotNull()).select(F.col("alt_text").alias("_text"), "_hint"))
    alt = alt.select(F.col("_text").alias("alt_text"), "_hint", *[F.col(c).alias("a" + c) for c in alt.columns
                                                                   if c.startswith("p_")])
    df = records.join(own, ["address_text", "_hint"], "left").join(F.broadcast(alt), ["alt_text", "_hint"], "left")
    use_alt = F.col("ap_door_key").isNotNull()

    def pick(name: str) -> F.Column:
        return F.when(use_alt, F.col("a" + name)).otherwise(F.col(name))

    return df.select(
        "source", "record_key", "address_text", "lon", "lat", "crs", "origin", "_file_sha256", "_row", "_batch_id",
        pick("p_door_key").alias("door_key"), pick("p_town").alias("town"), pick("p_road").alias("road"),
        pick("p_number").alias("number"), pick("p_building").alias("building"),
        pick("p_door_text").alias("door_text"), pick("p_code").alias("code"),
        # exact: the record's own text is the standard text of the very address it is linked to
        (F.coalesce(F.col("p_exact"), F.lit(False))
         & F.coalesce(F.col("p_door_key") == pick("p_door_key"), F.lit(False))).alias("exact"),
        F.when(F.col("address_text").isNull(), F.lit("empty")).otherwise(F.col("p_reason")).alias("p_reason"),
    )


def links_of(resolved: DataFrame, library_keys: DataFrame, points: DataFrame) -> DataFrame:
    """One link row per record (``LINK_COLUMNS`` without run_id), with the unit containing the
    record's own point (``town_code``, NULL without a point or outside the district). Pure."""
    lib = library_keys.select(F.col("door_key").alias("_lib_key"), F.lit(True).alias("_in_lib"))
    pts = points.select(F.col("source").alias("_p_source"), F.col("record_key").alias("_p_rk"), "town_code")
    df = resolved.join(lib, resolved["door_key"] == lib["_lib_key"], "left").join(
        pts, (F.col("source") == F.col("_p_source")) & (F.col("record_key") == F.col("_p_rk")), "left")
    in_lib = F.coalesce(F.col("_in_lib"), F.lit(False))
    return df.select(
        "source", "record_key", "address_text",
        F.when(in_lib, F.col("code")).alias("address_code"),
        F.when(~in_lib, F.lit("unmatched")).when(F.col("exact"), F.lit("exact")).otherwise(F.lit("normalised")).alias("match"),
        F.when(~in_lib, F.coalesce(F.col("p_reason"), F.lit("not_in_library"))).alias("reason"),
        "door_key", "town_code", F.col("origin").alias("origin_source"), "_file_sha256", "_row", "_batch_id",
    )


def _to_wgs84_batches(batches):
    from lake.geo import to_wgs84

    for pdf in batches:
        lon, lat = to_wgs84(pdf["lon"].to_numpy(dtype="float64"), pdf["lat"].to_numpy(dtype="float64"),
                            pdf["crs"].to_numpy(dtype=object))
        pdf["lon"], pdf["lat"] = lon, lat
        yield pdf


def record_points(resolved: DataFrame, boundaries: list | None) -> DataFrame:
    """Every record with a point: WGS-84 ``lon``/``lat`` (from the system its contract declares),
    ``town_code`` (the unit of ``boundaries`` containing it; NULL without them) and ``outside`` (outside
    every unit; without boundaries, outside the district's extent). Pure."""
    from lake.geo import EXTENT

    pts = resolved.where(F.col("lon").isNotNull() & F.col("lat").isNotNull() & F.col("crs").isNotNull()).select(
        "source", "record_key", "door_key", F.col("lon").alias("raw_lon"), F.col("lat").alias("raw_lat"),
        "lon", "lat", "crs", "_batch_id", "_file_sha256", "_row")
    wgs = pts.mapInPandas(_to_wgs84_batches, pts.schema).where(~F.isnan("lon") & ~F.isnan("lat"))
    if boundaries is not None:
        from lake.geo import assign_units

        wgs = assign_units(wgs, "lon", "lat", boundaries, code_col="town_code", name_col="_unit").drop("_unit")
        return wgs.withColumn("outside", F.col("town_code").isNull())
    x0, y0, x1, y1 = EXTENT
    return wgs.withColumn("town_code", F.lit(None).cast("string")).withColumn(
        "outside", ~(F.col("lon").between(x0, x1) & F.col("lat").between(y0, y1)))


def coordinates(points: DataFrame, order: tuple[str, ...]) -> DataFrame:
    """Per door key the point of the first source in ``order`` that has one inside the district
    (smallest record key within a source), its unit and where it came from; a point outside is used
    only when no source has one inside. Pure."""
    prio = F.create_map(*[x for i, s in enumerate(order) for x in (F.lit(s), F.lit(i))])
    best = points.where(F.col("source").isin(*order) & F.col("door_key").isNotNull()).groupBy("door_key").agg(
        F.min(F.struct(
            F.col("outside").alias("out"), prio[F.col("source")].alias("p"), F.col("record_key").alias("rk"),
            "lon", "lat", "town_code",
            F.struct(F.col("source"), F.col("_batch_id").alias("batch_id"), F.col("_file_sha256").alias("file_sha256"),
                     F.col("_row").alias("row")).alias("origin"))).alias("b"))
    return best.select("door_key", F.col("b.lon").alias("lon"), F.col("b.lat").alias("lat"),
                       F.col("b.town_code").alias("town_code"), F.col("b.origin").cast(LINEAGE_TYPE).alias("xy_origin"))


def library(resolved: DataFrame, links: DataFrame, coords: DataFrame) -> DataFrame:
    """The library rows: one per door key of the authority. Pure."""
    plates = resolved.where((F.col("source") == AUTHORITY) & F.col("door_key").isNotNull())
    first = plates.groupBy("door_key").agg(F.min(F.struct(
        F.col("record_key").alias("rk"), "code", "town", "road", "number", "building", "door_text",
        F.struct(F.col("source"), F.col("_batch_id").alias("batch_id"), F.col("_file_sha256").alias("file_sha256"),
                 F.col("_row").alias("row")).alias("origin"))).alias("f"))
    counts = links.where(F.col("address_code").isNotNull()).groupBy(F.col("door_key")).agg(
        F.count("*").alias("n_records"), F.concat_ws(",", F.sort_array(F.collect_set("source"))).alias("sources"))
    df = first.join(coords, "door_key", "left").join(counts, "door_key", "left")
    origin = F.col("f.origin").cast(LINEAGE_TYPE)
    lineage = F.create_map(
        F.lit("town"), origin, F.lit("road"), origin, F.lit("number"), origin, F.lit("building"), origin,
        F.lit("lon"), F.col("xy_origin"), F.lit("lat"), F.col("xy_origin"))
    return df.select(
        F.col("f.code").alias("address_code"), "door_key", F.col("f.town").alias("town"), F.col("f.road").alias("road"),
        F.col("f.number").alias("number"), F.col("f.building").alias("building"),
        F.col("f.door_text").alias("canonical"), "lon", "lat", "town_code",
        F.coalesce(F.col("n_records"), F.lit(0)).cast("long").alias("n_records"), "sources",
        lineage.alias("_lineage"))


def match_rates(links: DataFrame) -> DataFrame:
    """Per source: records, matched, match_rate. Pure."""
    return links.groupBy("source").agg(
        F.count("*").alias("records"), F.count("address_code").alias("matched"),
    ).withColumn("match_rate", F.round(F.col("matched") / F.col("records"), 4))


def check_codes(spark: SparkSession, library_rows: DataFrame) -> None:
    """Two door keys with one address code (a 32-bit hash collision inside a town) cannot both be
    published under it: fail naming them instead of letting the gate report a duplicate key."""
    dup = library_rows.groupBy("address_code").agg(F.collect_set("door_key").alias("keys")) \
        .where(F.size("keys") > 1).limit(5).collect()
    if dup:
        raise ValueError(f"{TABLE}: address code collision (first 8 hex of sha1 within a town): "
                         + "; ".join(f"{r['address_code']} <- {sorted(r['keys'])}" for r in dup))


# ------------------------------------------------------------------ findings

def unmatched_findings(spark: SparkSession, settings: Settings, contracts: Contracts, links: DataFrame,
                       run_id: str) -> DataFrame:
    """A finding per unmatched record that has an address (an empty address is a missing value, not an
    unmatched one), for the department that sent it: a raw source's own record, or for a base table
    the department row its address came from (``_lineage``), found by file and row."""
    um = links.where((F.col("match") == "unmatched") & (F.col("reason") != "empty")
                     & F.col("origin_source").isNotNull()).withColumnRenamed("origin_source", "origin")
    message = F.concat(F.col("reason"), F.lit(": "), F.coalesce(
        F.create_map(*[x for k, v in addr.REASONS.items() for x in (F.lit(k), F.lit(v))])[F.col("reason")],
        F.lit("")), F.when(F.col("door_key").isNotNull(), F.concat(F.lit(" ("), F.col("door_key"), F.lit(")")))
        .otherwise(F.lit("")))
    parts = []
    raw_part = um.where(F.col("source") == F.col("origin"))
    base_part = um.where(F.col("source") != F.col("origin"))
    origins = [r[0] for r in base_part.select("origin").distinct().collect()]
    for o in origins:
        path = io.table_path(settings, "raw", o)
        if o not in contracts.sources or not io.is_table(spark, path):
            log.warning("address findings: lineage names source '%s', which has no raw table; skipped", o)
            continue
        sc = contracts.source(o)
        raw = io.read(spark, path).select(F.col("_file_sha256").alias("_s"), F.col("_row").alias("_r"),
                                          F.col(sc.record_key).cast("string").alias("_rk"))
        part = base_part.where(F.col("origin") == o)
        parts.append(part.join(raw, (part["_file_sha256"] == raw["_s"]) & (part["_row"] == raw["_r"]), "inner")
                     .withColumn("record_key", F.col("_rk")).drop("_s", "_r", "_rk"))
    depts = F.create_map(*[x for s, sc in contracts.sources.items() for x in (F.lit(s), F.lit(sc.department))])
    all_um = reduce(DataFrame.unionByName, [raw_part, *parts])
    return _finding_rows(all_um, run_id, F.col("origin"), depts[F.col("origin")], F.col("record_key"),
                         F.lit("address"), RULE, DEFECT, message, F.col("address_text"))


def _finding_rows(df: DataFrame, run_id: str, source: F.Column, department: F.Column, record_key: F.Column,
                  field: F.Column, rule: str, defect: str, message: F.Column, value: F.Column) -> DataFrame:
    return df.select(
        F.lit(run_id).alias("run_id"), F.lit(STAGE).alias("stage"), source.alias("source"), department.alias("department"),
        record_key.cast("string").alias("record_key"), field.alias("field"), F.lit(rule).alias("rule"),
        F.lit(rules.WARNING).alias("severity"), F.lit(defect).alias("defect_type"), message.alias("message"),
        value.cast("string").alias("value"), "_file_sha256", F.col("_row").cast("long").alias("_row"), "_batch_id")


def outside_findings(points: DataFrame, contracts: Contracts, run_id: str) -> DataFrame:
    """``point_outside_district`` for the address sources' records whose point lies outside every unit
    of the boundary registry (the POIs' are jobs/spatial.py's). Call only with boundaries. Pure."""
    own = [s for s in (AUTHORITY, *FALLBACKS) if s in contracts.sources]
    depts = F.create_map(*[x for s in own for x in (F.lit(s), F.lit(contracts.source(s).department))])
    lon_cols = F.create_map(*[x for s in own for x in (F.lit(s), F.lit(_geometry(contracts.source(s)).get("lon", "lon")))])
    out = points.where(F.col("outside") & F.col("source").isin(*own))
    return _finding_rows(
        out, run_id, F.col("source"), depts[F.col("source")], F.col("record_key"), lon_cols[F.col("source")],
        "geo.outside_district", "point_outside_district",
        F.concat(F.lit("the point (WGS-84 "), F.format_number("lon", 6), F.lit(", "), F.format_number("lat", 6),
                 F.lit(") is outside every town and street of the district")),
        F.concat_ws(",", F.col("raw_lon").cast("string"), F.col("raw_lat").cast("string")))


def duplicate_findings(raw: DataFrame, sc: SourceContract, run_id: str) -> DataFrame:
    """``duplicate_record``: a row whose unique key (the contract's; default the entity key) appears
    earlier in the same file (the first row is the one kept), as in jobs/build_base. Pure."""
    uk = list(sc.unique_key or (sc.entity_key,))
    w = Window.partitionBy("_file_sha256", *uk).orderBy("_row")
    dups = raw.where(F.col(sc.entity_key).isNotNull()).withColumn("_n", F.row_number().over(w)).where(F.col("_n") > 1)
    return _finding_rows(
        dups, run_id, F.lit(sc.source), F.lit(sc.department), F.col(sc.record_key), F.lit(sc.entity_key),
        "duplicate.entity_key", "duplicate_record", F.lit(f"the same {sc.entity_key} appears earlier in the same file"),
        F.col(sc.entity_key))


# ------------------------------------------------------------------ job

def _present(spark: SparkSession, settings: Settings, contracts: Contracts) -> tuple[list[str], list[str]]:
    raw = [s for s in RAW_SOURCES if s in contracts.sources and io.is_table(spark, io.table_path(settings, "raw", s))]
    base = [t for t in BASE_SOURCES if io.is_table(spark, io.table_path(settings, *t.split(".")))]
    return raw, base


def run_id(spark: SparkSession, settings: Settings) -> str:
    """The run id of the current inputs: Delta versions of every input table, the contracts and the
    code of the parser and this job."""
    tables = [f"raw.{s}" for s in RAW_SOURCES] + [*BASE_SOURCES, ".".join(ADMIN_BOUNDARY)]
    code = [Path(addr.__file__), Path(__file__)]  # the parser and this job
    return f"address-{io.inputs_hash(io.table_versions(spark, settings, tables), io.contract_files(settings.contracts_dir) + code)[:12]}"


def _has_run(spark: SparkSession, settings: Settings, rid: str) -> bool:
    path = io.table_path(settings, *LINKS)
    return io.is_table(spark, path) and io.read(spark, path).where(F.col("run_id") == rid).limit(1).count() > 0


def _boundaries(spark: SparkSession, settings: Settings):
    path = io.table_path(settings, *ADMIN_BOUNDARY)
    if not io.is_table(spark, path):
        return None
    from lake.geo import boundaries_from_rows

    return boundaries_from_rows(io.read(spark, path).select("code", "name", "kind", "geometry").collect())


def _summary(spark: SparkSession, settings: Settings, rid: str) -> tuple[dict, dict]:
    rates = {r["source"]: {"records": r["records"], "matched": r["matched"], "match_rate": r["match_rate"]}
             for r in io.read(spark, io.table_path(settings, *MATCH)).where(F.col("run_id") == rid).collect()}
    fpath = io.table_path(settings, *findings.FINDINGS)
    per_defect = {r["defect_type"]: r["count"] for r in io.read(spark, fpath)
                  .where(F.col("run_id") == rid).groupBy("defect_type").count().collect()} \
        if io.is_table(spark, fpath) else {}
    return rates, per_defect


def _done(spark: SparkSession, settings: Settings, rid: str) -> dict | None:
    """The numbers of run ``rid`` when it has finished (its match rates are written after the table
    passed its gate), else None. Nothing is left to do then."""
    mpath = io.table_path(settings, *MATCH)
    if not io.is_table(spark, mpath) or io.read(spark, mpath).where(F.col("run_id") == rid).limit(1).count() == 0:
        return None
    rates, per_defect = _summary(spark, settings, rid)
    rows = int(str(io.last_metadata(spark, io.table_path(settings, *TABLE.split("."))).get("fingerprint", "0")).split(":")[0])
    return {"table": TABLE, "run_id": rid, "status": "unchanged", "rows": rows, "door_keys": rows,
            "match": rates, "findings": sum(per_defect.values()), "findings_by_type": per_defect}


def build_library(settings: Settings, as_of: str, spark: SparkSession | None = None) -> dict:
    """Build ``base.standard_address``, ``quality/address_links``, ``quality/address_match`` and the
    findings (``address_unmatched``; for the address sources' own rows also ``duplicate_record`` and,
    once base.admin_boundary exists, ``point_outside_district``) from the current lake; returns the
    run's numbers."""
    t0 = time.time()
    spark = spark or get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc = contracts.table(TABLE)
    raw_present, base_present = _present(spark, settings, contracts)
    if AUTHORITY not in raw_present:
        raise contracts_mod.ContractError(
            f"{TABLE}: no raw data yet from {AUTHORITY}, the authority for standard addresses; ingest it first")
    rid = run_id(spark, settings)
    done = _done(spark, settings, rid)
    if done is not None:
        done["seconds"] = round(time.time() - t0, 2)
        log.info("%s: run %s already done for these inputs; nothing to do", TABLE, rid)
        return done
    parts = [raw_records(io.read(spark, io.table_path(settings, "raw", s)), contracts.source(s)) for s in raw_present]
    for t in base_present:
        btc = contracts.table(t)
        parts.append(base_records(io.read(spark, io.table_path(settings, *t.split("."))), t, btc.key[0]))
    records = reduce(DataFrame.unionByName, parts).persist(StorageLevel.MEMORY_AND_DISK)
    stats: dict = {"table": TABLE, "run_id": rid, "sources": raw_present + base_present}

    boundaries = _boundaries(spark, settings)
    resolved = resolve(records).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        t1 = time.time()
        keys = resolved.where((F.col("source") == AUTHORITY) & F.col("door_key").isNotNull()) \
            .select("door_key").distinct().persist(StorageLevel.MEMORY_AND_DISK)
        n_keys = keys.count()
        records.unpersist()  # resolved holds everything from here on
        points = record_points(resolved, boundaries).persist(StorageLevel.MEMORY_AND_DISK)
        n_points = points.count()
        stats["parse_seconds"] = round(time.time() - t1, 2)
        links_path = io.table_path(settings, *LINKS)
        if not _has_run(spark, settings, rid):
            t1 = time.time()
            links = links_of(resolved, keys, points).persist(StorageLevel.MEMORY_AND_DISK)
            found = [unmatched_findings(spark, settings, contracts, links, rid)]
            found += [duplicate_findings(io.read(spark, io.table_path(settings, "raw", s)), contracts.source(s), rid)
                      for s in (AUTHORITY, *FALLBACKS) if s in raw_present]
            if boundaries is not None:
                found.append(outside_findings(points, contracts, rid))
            findings.write(settings, reduce(DataFrame.unionByName, found), run_id=rid)
            # its rows mark the links and findings of the run as written
            io.replace_where(links.select(F.lit(rid).alias("run_id"), *links.columns), links_path, f"run_id = '{rid}'")
            links.unpersist()
            stats["links_seconds"] = round(time.time() - t1, 2)
        stored = io.read(spark, links_path).where(F.col("run_id") == rid)
        order = tuple(s for s in (AUTHORITY, *[f for c in tc.columns if c.name == "lon" for f in c.fallback])
                      if s in raw_present)
        check_codes(spark, resolved.where((F.col("source") == AUTHORITY) & F.col("door_key").isNotNull())
                    .select("door_key", F.col("code").alias("address_code")).distinct())
        lib = library(resolved, stored, coordinates(points, order))
        t1 = time.time()
        res = gates.publish(spark, settings, tc, lib, {"as_of": as_of, "inputs": rid})
        stats["publish_seconds"] = round(time.time() - t1, 2)
        # written last (after the gate passed): its rows mark the whole run as done
        io.replace_where(match_rates(stored).select(F.lit(rid).alias("run_id"), "*"),
                         io.table_path(settings, *MATCH), f"run_id = '{rid}'")
        rates, per_defect = _summary(spark, settings, rid)
    finally:
        spark.catalog.clearCache()
    stats.update({"status": res.status, "rows": res.rows, "door_keys": n_keys, "points": n_points, "match": rates,
                  "findings": sum(per_defect.values()), "findings_by_type": per_defect,
                  "seconds": round(time.time() - t0, 2)})
    log.info("%s: %s, %d addresses, %d findings in %.1fs", TABLE, res.status, res.rows, stats["findings"],
             stats["seconds"])
    return stats


def current_links(spark: SparkSession, settings: Settings) -> DataFrame | None:
    """The rows of ``quality/address_links`` of the run of the current inputs (None before it ran):
    what a consumer (base.poi, location evaluation) should read instead of every run's rows."""
    rid = run_id(spark, settings)
    if not _has_run(spark, settings, rid):
        return None
    return io.read(spark, io.table_path(settings, *LINKS)).where(F.col("run_id") == rid)


def skipped_without_links(tables) -> list[dict]:
    """The results of a consumer of :func:`current_links` that ran before the links of the current
    inputs were built: every table of ``tables`` skipped, with the reason."""
    return [{"table": t, "status": "skipped", "rows": 0,
             "reason": "the address library's links of the current inputs are not built yet"} for t in tables]


TABLES = (TABLE,)


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    """Build ``base.standard_address`` and its links and match rates (once per set of inputs)."""
    return [build_library(settings, as_of)]
