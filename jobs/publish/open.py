"""The open zone (开放): exports for the open-data portal.

For each table with an ``open_dataset``: ``open/<dataset>/data.csv`` (UTF-8), ``data.json``,
``data.geojson`` for spatial datasets (WGS-84 points or unit polygons) and ``metadata.json``
(DCAT-style: title, description, publisher, licence, update frequency, coverage, columns). Counts
under 5 are suppressed. Before anything is written a GX gate checks that no value looks like a
citizen ID number or a mobile number.
"""
from __future__ import annotations

import csv
import io as pyio
import json

from pyspark.sql import SparkSession

from lake import contracts as contracts_mod
from lake import io, rules
from lake.contracts import TableContract
from lake.log import log
from lake.reference import DISTRICT
from lake.settings import Settings
from quality import gates

SMALL_CELL = 5


PUBLISHER = f"{DISTRICT.bureau} (Daxing District Big Data Bureau)"


LICENCE = "CC-BY-4.0"


SPATIAL = {"name": DISTRICT.name, "admin_code": DISTRICT.code, "bbox_wgs84": list(DISTRICT.bbox_wgs84)}


CYCLE_TO_DCAT = {"daily": "http://purl.org/cld/freq/daily", "weekly": "http://purl.org/cld/freq/weekly",
                 "monthly": "http://purl.org/cld/freq/monthly", "quarterly": "http://purl.org/cld/freq/quarterly",
                 "yearly": "http://purl.org/cld/freq/annual"}


def suppress(pdf, count_columns: list[str]):
    """Blank counts under SMALL_CELL (primary small-cell suppression)."""
    pdf = pdf.copy()
    for c in count_columns:
        pdf[c] = pdf[c].astype("Int64").where(pdf[c] >= SMALL_CELL)
    return pdf


def open_files(tc: TableContract, pdf, as_of: str) -> dict[str, bytes]:
    ds = tc.open_dataset
    cols = tc.column_names
    pdf = pdf[cols].sort_values(list(tc.key)).reset_index(drop=True)
    buf = pyio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    records = []
    for row in pdf.itertuples(index=False):
        vals = [_plain(v) for v in row]  # counts stay whole numbers, measurements keep their decimals
        w.writerow(["" if v is None else v for v in vals])
        records.append(dict(zip(cols, vals)))
    metadata = {
        "identifier": ds["id"], "title": ds["title"], "description": ds["description"],
        "publisher": PUBLISHER, "license": LICENCE, "keywords": ds.get("keywords", []),
        "accrualPeriodicity": CYCLE_TO_DCAT.get(tc.update_cycle, tc.update_cycle), "update_frequency": tc.update_cycle,
        "spatial": SPATIAL, "temporal": {"as_of": as_of}, "modified": as_of,
        "source_table": tc.table, "grain": tc.grain,
        "columns": [{"name": c.name, "title": c.title, "type": c.type} for c in tc.columns],
        "small_cell_suppression": f"counts below {SMALL_CELL} are left blank",
        "distributions": [{"format": "CSV", "mediaType": "text/csv", "encoding": "UTF-8", "file": "data.csv"},
                          {"format": "JSON", "mediaType": "application/json", "file": "data.json"}],
    }
    return {
        "data.csv": buf.getvalue().encode("utf-8"),
        "data.json": json.dumps(records, ensure_ascii=False, indent=1).encode("utf-8"),
        "metadata.json": json.dumps(metadata, ensure_ascii=False, indent=2).encode("utf-8"),
    }


def geojson_file(spark: SparkSession, settings: Settings, tc: TableContract, pdf) -> bytes | None:
    """``data.geojson`` (RFC 7946, WGS-84) for a dataset whose ``open_dataset.geojson`` says where its
    geometry comes from: ``{points: [lon, lat]}`` (columns of the table) or ``{polygons_from:
    base.admin_boundary, key: town_code}`` (the unit polygon of the row's key). Properties are the same
    (suppressed) values as data.csv. None when the dataset has no geometry."""
    spec = tc.open_dataset.get("geojson")
    if not spec:
        return None
    cols = tc.column_names
    pdf = pdf[cols].sort_values(list(tc.key)).reset_index(drop=True)
    if "points" in spec:
        lon_col, lat_col = spec["points"]

        def geometry(row):
            lon, lat = row[lon_col], row[lat_col]
            return None if lon is None or lat is None else {"type": "Point", "coordinates": [round(float(lon), 7), round(float(lat), 7)]}
    elif "polygons_from" in spec:
        zone, name = spec["polygons_from"].split(".")
        path = io.table_path(settings, zone, name)
        if not io.is_table(spark, path):
            raise contracts_mod.ContractError(f"{tc.table}: its GeoJSON needs {spec['polygons_from']}, which is not built")
        shapes = {r["code"]: json.loads(r["geometry"]) for r in io.read(spark, path).select("code", "geometry").collect()}
        key = spec.get("key", "town_code")

        def geometry(row):
            return shapes.get(row[key])
    else:
        raise contracts_mod.ContractError(f"{tc.path}: open_dataset.geojson needs 'points' or 'polygons_from'")
    features = []
    for rec in _records(pdf, cols):
        features.append({"type": "Feature", "geometry": geometry(rec), "properties": rec})
    doc = {"type": "FeatureCollection", "name": tc.open_dataset["id"], "features": features}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _records(pdf, cols: list[str]) -> list[dict]:
    out = []
    for row in pdf.itertuples(index=False):
        out.append(dict(zip(cols, [_plain(v) for v in row])))
    return out


def _plain(v):
    """A JSON-ready value: None for missing, int for whole numbers, str for dates and times."""
    if v is None or str(v) in ("<NA>", "NaT", "nan"):
        return None
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, (int, float, str, bool)):
        return v
    return str(v)


def pii_specs(columns: list[str]) -> list[dict]:
    """No value may contain an ID number or a mobile number standing alone (not inside a longer run
    of digits: the digits 9-17 of a unified social credit code such as 91110115012345678X are not a
    phone number, and credit codes are what open legal-entity data is keyed by)."""
    specs = []
    for c in columns:
        for regex in (rules.ID_NUMBER_REGEX, f"(?:86)?{rules.MOBILE_REGEX}"):   # a mobile with or without +86
            specs.append({"type": "not_regex", "column": c, "regex": f"(?<![0-9]){regex}(?![0-9])"})
    return specs


def publish_open(spark: SparkSession, settings: Settings) -> list[dict]:
    contracts = contracts_mod.load(settings.contracts_dir)
    out = []
    for tc in sorted(contracts.tables.values(), key=lambda t: t.table):
        if tc.open_type == "none" or not tc.open_dataset:
            continue
        src = io.table_path(settings, tc.zone, tc.name)
        if not io.is_table(spark, src):
            raise contracts_mod.ContractError(f"{tc.table} is not published yet; build it before opening it")
        as_of = io.last_metadata(spark, src).get("as_of", "")
        pdf = suppress(io.read(spark, src).select(*tc.column_names).toPandas(), tc.open_dataset.get("count_columns", []))
        files = open_files(tc, pdf, as_of)
        geo = geojson_file(spark, settings, tc, pdf)
        if geo is not None:
            files["data.geojson"] = geo
            meta = json.loads(files["metadata.json"])
            meta["distributions"].append({"format": "GeoJSON", "mediaType": "application/geo+json",
                                          "crs": "WGS-84 (EPSG:4326)", "file": "data.geojson"})
            files["metadata.json"] = json.dumps(meta, ensure_ascii=False, indent=2).encode("utf-8")
        folder = settings.path("open", tc.open_dataset["id"])
        changed = [n for n, b in files.items() if not (io.file_exists(f"{folder}/{n}") and io.read_bytes(f"{folder}/{n}") == b)]
        if not changed:
            out.append({"dataset": tc.open_dataset["id"], "status": "unchanged", "rows": len(pdf)})
            continue
        # PII gate on exactly what will be written: every value as text.
        text_cols = [c for c in tc.column_names]
        export = spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None).astype(str).replace("None", None))
        failures = gates.validate(spark, settings, f"open.{tc.open_dataset['id']}", export.select(*text_cols),
                                  pii_specs(text_cols), run_id=f"open-{tc.open_dataset['id']}-{hash(files['data.csv']) & 0xffffffff:08x}")
        if failures:
            raise gates.GateFailed(f"open.{tc.open_dataset['id']}", failures)
        for n, b in files.items():
            io.write_if_changed(f"{folder}/{n}", b)
        out.append({"dataset": tc.open_dataset["id"], "status": "published", "rows": len(pdf)})
        log.info("open/%s: published %d rows (%s)", tc.open_dataset["id"], len(pdf), ", ".join(changed))
    return out
