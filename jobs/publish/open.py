"""The open zone (开放): exports for the open-data portal.

For each table with an ``open_dataset``: ``open/<dataset>/data.csv`` (UTF-8), ``data.json``,
``data.geojson`` for spatial datasets (WGS-84 points or unit polygons) and ``metadata.json``
(DCAT-style: title, description, publisher, licence, update frequency, coverage, columns). Counts
under 5 are suppressed. Before anything is written a GX gate checks that no value looks like a
citizen ID number or a mobile number.
"""
from __future__ import annotations

import csv
import hashlib
import io as pyio
import json

from pyspark.sql import SparkSession

from lake import contracts as contracts_mod
from lake import io
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


def open_files(tc: TableContract, pdf, as_of: str, columns: list[dict] | None = None) -> dict[str, bytes]:
    """data.csv, data.json and metadata.json of ``pdf``; ``columns`` ({name, title, type}) when the
    published columns are not the table's (a de-identified record-level dataset: sorted by every column)."""
    ds = tc.open_dataset
    cols = [c["name"] for c in columns] if columns is not None else tc.column_names
    order = list(tc.key) if columns is None else cols
    pdf = pdf[cols]
    if len(pdf):
        pdf = pdf.sort_values(order, key=(None if columns is None else lambda s: s.astype(str))).reset_index(drop=True)
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
        "columns": ([{"name": c.name, "title": c.title, "type": c.type} for c in tc.columns] if columns is None
                    else [{"name": c["name"], "title": c.get("title", ""), "type": c.get("type", "string")} for c in columns]),
        "small_cell_suppression": f"counts below {SMALL_CELL} are left blank", "small_cell_threshold": SMALL_CELL,
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
    """The GX gate's checks: no value holds a token shaped like an ID number or a mobile number (a
    token: not inside a longer run of letters and digits, so a credit code is not taken for one)."""
    from opendata import leaks

    specs = []
    for c in columns:
        specs.append({"type": "not_regex", "column": c, "regex": leaks.ID_TOKEN_JAVA})
        specs.append({"type": "not_regex", "column": c, "regex": leaks.MOBILE_TOKEN_JAVA})
    return specs


class PublicationRefused(gates.GateFailed):
    """One or more open datasets were not published (each keeps its previous version); one line each."""

    def __init__(self, refusals: list[tuple[str, str]]):
        self.table = "open"
        self.failures = []
        self.refusals = refusals
        RuntimeError.__init__(self, "open data not published (the previous version of each stays):\n"
                              + "\n".join(f"  - {ds}: {why}" for ds, why in refusals))


def _meta(files: dict[str, bytes], **extra) -> dict[str, bytes]:
    meta = json.loads(files["metadata.json"])
    for k, v in extra.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    files["metadata.json"] = json.dumps(meta, ensure_ascii=False, indent=2).encode("utf-8")
    return files


def record_files(tc: TableContract, pdf, as_of: str, key: bytes | None = None) -> tuple[dict[str, bytes], object]:
    """A record-level dataset: the contract's column rules, anonymisation (k, l) and its files, then the
    k-anonymity / l-diversity gate on the exact data.csv (opendata/deid.py). Raises deid.Refused."""
    import pandas as pd

    from opendata import deid

    od = tc.open_dataset
    qi, sens = list(od.get("quasi_identifiers") or []), list(od.get("sensitive") or [])
    records = {c: pdf[c].tolist() for c in tc.column_names}
    prepared = deid.prepare(tc, records, as_of, key)
    anon = deid.anonymise(prepared, od["id"], qi, sens, od["k"], od.get("l"), od["max_suppression"])
    names = [c["name"] for c in prepared.columns]
    out = pd.DataFrame(anon.rows, columns=names) if anon.rows else pd.DataFrame({n: pd.Series(dtype=object) for n in names})
    files = open_files(tc, out.astype(object), as_of, columns=prepared.columns)
    measured = deid.check_file(files["data.csv"], od["id"], qi, sens, od["k"], od.get("l"))
    files = _meta(
        files, kind="record", quasi_identifiers=qi, k=od["k"], sensitive_attributes=sens or None, l=od.get("l"),
        deidentification={c: (r if isinstance(r, str) else {"generalise": r["generalise"], **({"as": r["as"]} if r.get("as") else {})})
                          for c, r in od["deidentify"].items()},
        generalisation=anon.levels or None, suppressed_records=anon.suppressed,
        anonymity={"k": measured["k"], "l": measured["l"], "equivalence_classes": measured["classes"],
                   "measured_on": "data.csv"} if qi else {"k": None, "note": "no quasi-identifiers: no row describes a person"},
        small_cell_suppression=None, small_cell_threshold=None)
    return files, out


def aggregate_files(tc: TableContract, pdf, as_of: str) -> tuple[dict[str, bytes], object]:
    """An aggregate: primary and complementary suppression of its count columns over its key columns,
    every margin in totals.csv, and the audit of the exact files (opendata/cells.py)."""
    from opendata import cells, deid

    od = tc.open_dataset
    counts = list(od.get("count_columns") or [])
    if not counts:
        return open_files(tc, pdf, as_of), pdf
    dims = [k for k in tc.key]
    pdf = pdf.copy()
    rows = pdf.to_dict("records")
    totals: dict[tuple, dict] = {}
    report = {}
    for c in counts:
        prot = cells.protect([{**{d: r[d] for d in dims}, c: 0 if r[c] is None or str(r[c]) == "<NA>" else r[c]}
                              for r in rows], dims, c, SMALL_CELL)
        cell_vals, margins = cells.published(prot)
        blank_cells = {k for k, v in cell_vals if v is None}
        pdf[c] = [None if tuple(str(r[d]) for d in dims) in blank_cells else r[c] for r in rows]
        pdf[c] = pdf[c].astype("Int64")
        for key, v in margins:
            totals.setdefault(key, {d: key[i] for i, d in enumerate(dims)})[c] = v
        report[c] = {"primary": len(prot.primary), "complementary": len(prot.complementary)}
    files = open_files(tc, pdf, as_of)
    buf = pyio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*dims, *counts])
    for key in sorted(totals, key=cells._sort_key):
        # a margin a count column has no entry for sums only zero cells (cells.build_table skips them): 0, not blank
        w.writerow([*key, *["" if totals[key].get(c, 0) is None else totals[key].get(c, 0) for c in counts]])
    files["totals.csv"] = buf.getvalue().encode("utf-8")
    # the audit of what would be published: read back, every blank must stay unknown
    _, data_rows = deid.read_csv(files["data.csv"])
    _, total_rows = deid.read_csv(files["totals.csv"])
    for c in counts:
        table, blank = cells.read_published(data_rows, total_rows, dims, c)
        small = [k for k, v in table.counts.items() if k not in blank and 0 < v < SMALL_CELL]
        if small:
            raise deid.Refused(f"open/{od['id']}: {c} publishes {len(small)} count(s) under {SMALL_CELL}, e.g. {list(small[0])}")
        truth = cells.build_table([{**{d: r[d] for d in dims}, c: 0 if r[c] is None or str(r[c]) == "<NA>" else r[c]}
                                   for r in rows], dims, c)
        truth.values = table.values
        bad = cells.exposed(truth, blank)
        if bad:
            raise deid.Refused(f"open/{od['id']}: {len(bad)} blank {c} cell(s) can be recomputed from the published "
                               f"totals, e.g. {list(bad[0])}")
    meta = json.loads(files["metadata.json"])
    meta["distributions"].append({"format": "CSV", "mediaType": "text/csv", "encoding": "UTF-8", "file": "totals.csv"})
    files["metadata.json"] = json.dumps(meta, ensure_ascii=False, indent=2).encode("utf-8")
    files = _meta(files, kind="aggregate",
                  suppression=(f"主单元格抑制（{'、'.join(counts)}小于{SMALL_CELL}）与互补单元格抑制：被抑制的单元格留空，"
                               f"各维度合计见 totals.csv（{cells.TOTAL}），任何留空的单元格都无法由已发布的数值和合计推算"),
                  suppression_detail={"method": "primary+complementary", "threshold": SMALL_CELL, "dimensions": dims,
                                      "count_columns": counts, "margins": "totals.csv", "total_label": cells.TOTAL,
                                      "cells": report})
    return files, pdf


def frame_digest(pdf) -> str:
    """A digest of a frame's rows whatever their order (toPandas gives the partitions' order, which
    differs between local[2] and a cluster): the validation's run id stays the same for the same rows."""
    lines = pdf.to_csv(index=False).splitlines()
    return hashlib.sha256("\n".join(lines[:1] + sorted(lines[1:])).encode("utf-8")).hexdigest()[:8]


def check_files(spark, settings: Settings, tc: TableContract, files: dict[str, bytes], pdf, known_names) -> None:
    """The gates every candidate passes: the leak scan of the exact bytes (ID numbers, mobile numbers,
    names from the population base; opendata/leaks.py) and the GX gate on every value as text."""
    from opendata import deid, leaks

    ds = tc.open_dataset["id"]
    found = leaks.scan(files, ds, known_names) if files else []
    if found:
        by_rule: dict[str, list] = {}
        for x in found:
            by_rule.setdefault(x.rule, []).append(x)
        # every rule that fired, with its count and first example (a long list would hide the other rules)
        raise deid.Refused(f"{len(found)} value(s) look like personal data ("
                           + ", ".join(f"{rule} {len(xs)}" for rule, xs in by_rule.items()) + "): "
                           + "; ".join(str(xs[0]) for xs in by_rule.values()))
    text_cols = list(pdf.columns)
    if spark is None or not len(pdf):
        return
    text = pdf.astype(object).where(pdf.notna(), None)
    text = text.apply(lambda col: col.map(lambda v: None if v is None else str(v)))
    export = spark.createDataFrame(text, schema=", ".join(f"`{c}` string" for c in text_cols))
    digest = frame_digest(pdf)
    failures = gates.validate(spark, settings, f"open.{ds}", export, pii_specs(text_cols), run_id=f"open-{ds}-{digest}")
    if failures:
        raise gates.GateFailed(f"open.{ds}", failures)


def candidate(spark, settings: Settings, tc: TableContract, pdf, as_of: str, known_names,
              key: bytes | None = None) -> tuple[dict[str, bytes], object]:
    """Every file of one open dataset and the frame they were written from, through the de-identification
    or cell-suppression gate and the leak scan (raises deid.Refused); the GX gate is ``check_files``."""
    if tc.open_dataset.get("kind") == "record":
        files, out = record_files(tc, pdf, as_of, key)
    else:
        files, out = aggregate_files(tc, pdf, as_of)
        geo = geojson_file(spark, settings, tc, out)
        if geo is not None:
            files["data.geojson"] = geo
            meta = json.loads(files["metadata.json"])
            meta["distributions"].append({"format": "GeoJSON", "mediaType": "application/geo+json",
                                          "crs": "WGS-84 (EPSG:4326)", "file": "data.geojson"})
            files["metadata.json"] = json.dumps(meta, ensure_ascii=False, indent=2).encode("utf-8")
    check_files(None, settings, tc, files, out, known_names)  # the leak scan; the GX gate runs when bytes change
    return files, out


def publish_open(spark: SparkSession, settings: Settings, key: bytes | None = None,
                 tables: list[str] | None = None) -> list[dict]:
    """Publish every open dataset (or only those of ``tables``: the DAG passes the ones built so far)
    that passes its gates; a refused one keeps its previous version and is named in the
    PublicationRefused raised at the end (after the others and the DCAT files)."""
    from opendata import deid, leaks

    contracts = contracts_mod.load(settings.contracts_dir)
    known_names = leaks.population_names(settings)
    out, refusals = [], []
    for tc in sorted(contracts.tables.values(), key=lambda t: t.table):
        if tc.open_type == "none" or not tc.open_dataset or (tables is not None and tc.table not in tables):
            continue
        ds = tc.open_dataset["id"]
        src = io.table_path(settings, tc.zone, tc.name)
        if not io.is_table(spark, src):
            raise contracts_mod.ContractError(f"{tc.table} is not published yet; build it before opening it")
        as_of = io.last_metadata(spark, src).get("as_of", "")
        pdf = io.read(spark, src).select(*tc.column_names).toPandas()
        if tc.open_dataset.get("kind") != "record":
            pdf = pdf.astype(object).where(pdf.notna(), None) if len(pdf) else pdf
        folder = settings.path("open", ds)
        try:
            files, frame = candidate(spark, settings, tc, pdf, as_of, known_names, key)
            changed = [n for n, b in files.items() if not (io.file_exists(f"{folder}/{n}") and io.read_bytes(f"{folder}/{n}") == b)]
            if changed:  # the GX gate on every value as text (its results go to quality/validations)
                check_files(spark, settings, tc, {}, frame, None)
        except (deid.Refused, gates.GateFailed) as e:
            refusals.append((ds, str(e).replace("\n", " ")))
            log.error("open/%s: not published, the previous version stays: %s", ds, e)
            out.append({"dataset": ds, "status": "refused", "rows": len(pdf)})
            continue
        rows = files["data.csv"].count(b"\n") - 1
        if not changed:
            out.append({"dataset": ds, "status": "unchanged", "rows": rows})
            continue
        for n, b in files.items():
            io.write_if_changed(f"{folder}/{n}", b)
        out.append({"dataset": ds, "status": "published", "rows": rows})
        log.info("open/%s: published %d rows (%s)", ds, rows, ", ".join(changed))
    # DCAT-AP 3 (dcat.ttl, dcat.jsonld), the open catalogue (catalog.ttl) and the CKAN package list of
    # every open dataset with a folder: opendata/dcat.py; files whose bytes do not change are not rewritten
    from opendata import dcat

    dcat.publish(settings, [tc for tc in contracts.tables.values() if tc.open_type != "none" and tc.open_dataset
                            and io.file_exists(settings.path("open", tc.open_dataset["id"], "metadata.json"))])
    if refusals:
        raise PublicationRefused(refusals)
    return out
