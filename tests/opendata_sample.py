"""A small open zone for the open-data tests, written without Spark by jobs.publish.open's own file
writers (``suppress``, ``open_files``, ``geojson_file`` for points) and described by
``opendata.dcat.publish`` exactly as ``publish_open`` does at its end.

Three datasets of the real contracts: population by town, age band and gender (counts, some under 5:
suppressed), flood points (WGS-84 points, a date column) and sensor coverage by town (town polygons
of the base map, one feature per town and device type, so geometries repeat).
"""
from __future__ import annotations

import datetime
import json

import pandas as pd
from shapely.geometry import mapping

from lake.settings import REPO, Settings

AS_OF = "2026-11-01"
TABLES = ("topic.population_by_town_age_band", "topic.flood_points", "topic.sensor_coverage_by_town")


def _write(settings: Settings, tc, files: dict[str, bytes]) -> None:
    from lake import io

    for name, data in files.items():
        io.write_if_changed(settings.path("open", tc.open_dataset["id"], name), data)


def _with_geojson(files: dict[str, bytes], geo: bytes) -> dict[str, bytes]:
    """What publish_open does for a spatial dataset: add data.geojson and list it in metadata.json."""
    files = dict(files)
    files["data.geojson"] = geo
    meta = json.loads(files["metadata.json"])
    meta["distributions"].append({"format": "GeoJSON", "mediaType": "application/geo+json",
                                  "crs": "WGS-84 (EPSG:4326)", "file": "data.geojson"})
    files["metadata.json"] = json.dumps(meta, ensure_ascii=False, indent=2).encode("utf-8")
    return files


def build(root: str, base_url: str | None = None, contracts_dir: str | None = None) -> tuple[Settings, list]:
    """Write the three datasets and their DCAT files under ``<root>/open``; return the settings and
    the contracts (of ``contracts_dir``, default the repository's)."""
    from jobs.publish import open as publish
    from lake import contracts as contracts_mod
    from lake import geo
    from sample import basemap
    from opendata import dcat

    settings = Settings(root=root, contracts_dir=contracts_dir or str(REPO / "contracts"),
                        **({"open_base_url": base_url} if base_url else {}))
    contracts = contracts_mod.load(settings.contracts_dir)

    pop = contracts.table("topic.population_by_town_age_band")
    rows = [("黄村镇", "18-34", "男", 12), ("黄村镇", "18-34", "女", 40), ("黄村镇", "0-17", "男", 7),
            ("旧宫镇", "0-17", "女", 3), ("旧宫镇", "35-59", "男", 26), ("西红门镇", "80+", "女", 5),
            ("西红门镇", "60-79", "男", 1), ("亦庄镇", "18-34", "女", 18)]
    pdf = publish.suppress(pd.DataFrame(rows, columns=pop.column_names), pop.open_dataset["count_columns"])
    _write(settings, pop, publish.open_files(pop, pdf, AS_OF))

    flood = contracts.table("topic.flood_points")
    d1, d2 = datetime.date(2026, 10, 31), datetime.date(2026, 11, 1)
    rows = [(d1, "110115-04-01-0000001-7", "兴华大街积水点", "110115012", "黄村镇", 116.3301, 39.7302, 20.0, 35.5,
             datetime.datetime(2026, 10, 31, 8, 5), 25),
            (d2, "110115-04-01-0000001-7", "兴华大街积水点", "110115012", "黄村镇", 116.3301, 39.7302, 20.0, 28.0,
             datetime.datetime(2026, 11, 1, 9, 0), 10),
            (d2, "110115-04-02-0000002-5", "旧宫桥下积水点", "110115011", "旧宫镇", 116.4503, 39.8001, 15.0, 22.0,
             datetime.datetime(2026, 11, 1, 6, 30), 40)]
    fpdf = pd.DataFrame(rows, columns=flood.column_names)
    files = publish.open_files(flood, fpdf, AS_OF)
    _write(settings, flood, _with_geojson(files, publish.geojson_file(None, settings, flood, fpdf)))

    cov = contracts.table("topic.sensor_coverage_by_town")
    units = basemap.district_boundaries()[:4]
    rows = []
    for u in units:
        area = geo.area_km2(u["geometry"])
        for dtype, n in (("01", 40), ("04", 6)):
            rows.append((d2, u["code"], u["name"], dtype, n, n - 1, round(n / area, 4), round((n - 1) / area, 4)))
    cpdf = pd.DataFrame(rows, columns=cov.column_names)
    files = publish.open_files(cov, cpdf, AS_OF)
    shapes = {u["code"]: json.loads(json.dumps(mapping(u["geometry"]))) for u in units}
    features = [{"type": "Feature", "geometry": shapes[r["town_code"]], "properties": r}
                for r in publish._records(cpdf.sort_values(list(cov.key)).reset_index(drop=True), cov.column_names)]
    gj = json.dumps({"type": "FeatureCollection", "name": cov.open_dataset["id"], "features": features},
                    ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    _write(settings, cov, _with_geojson(files, gj))

    tables = [pop, flood, cov]
    dcat.publish(settings, tables)
    return settings, tables
