"""DCAT-AP 3 metadata of the open zone (opendata/dcat.py), validated with pyshacl against the official
DCAT-AP 3.0.1 SHACL shapes shipped in opendata/shacl/, the CKAN package list, the contract keys the
open-data side reads, and idempotence (describing unchanged files again writes nothing). Fast: a
small hand-built open zone (tests/opendata_sample.py), no JVM."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io as pyio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rdflib import RDF, Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic

import opendata_sample
from lake.settings import REPO
from opendata import contract as od_contract
from opendata import dcat, vocab
from opendata.contract import OpenDataError

EU = "http://publications.europa.eu/resource/authority/"
DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCTERMS = Namespace("http://purl.org/dc/terms/")
FOAF = Namespace("http://xmlns.com/foaf/0.1/")
SKOS = Namespace("http://www.w3.org/2004/02/skos/core#")
BASE = "https://data.example.gov.cn/daxing/"
# Warnings the official shapes give on this lake, and why they are expected (see opendata/shacl/README.md):
# the publisher is a Chinese district bureau, not in the EU corporate-body table; the district is not
# in the EU place/country tables nor a GeoNames IRI; the catalogue's first issue date is not recorded.
EXPECTED_WARNINGS = {("dataset", str(DCTERMS.publisher)), ("dataset", str(DCTERMS.spatial)),
                     ("catalog", str(DCTERMS.publisher)), ("catalog", str(DCTERMS.spatial)),
                     ("catalog", str(DCTERMS.issued))}


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_lake")
    settings, tables = opendata_sample.build(str(root), base_url=BASE)
    return {"settings": settings, "tables": tables, "open": Path(root, "open")}


@pytest.fixture(scope="module")
def shapes():
    return dcat.shapes_graph()


def _graph(path: Path, fmt: str = "turtle") -> Graph:
    g = Graph()
    g.parse(path, format=fmt)
    return g


def _kind(focus: str) -> str:
    return "catalog" if focus.endswith("#catalog") else "dataset" if focus.endswith("#dataset") else focus


def _violations(results):
    return [r for r in results if r["severity"] == "Violation"]


# ---------------------------------------------------------------------------------------- SHACL

def test_shapes_are_the_official_release_files():
    readme = (REPO / "opendata" / "shacl" / "README.md").read_text(encoding="utf-8")
    for name in dcat.SHAPE_FILES:
        data = (REPO / "opendata" / "shacl" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() in readme, f"{name} differs from the file recorded in the README"
    assert "SEMICeu/DCAT-AP" in readme and "releases/3.0.1/html/shacl" in readme


def test_every_dataset_and_the_catalogue_conform(zone, shapes):
    files = sorted(zone["open"].glob("*/dcat.ttl")) + [zone["open"] / "catalog.ttl"]
    assert len(files) == 4
    for f in files:
        results = dcat.validate(_graph(f), shapes)
        assert _violations(results) == [], f"{f}: {_violations(results)}"
        warnings = {(_kind(r["focus"]), r["path"]) for r in results}
        assert warnings <= EXPECTED_WARNINGS, f"{f}: unexpected warnings {warnings - EXPECTED_WARNINGS}"


@pytest.mark.parametrize("remove, focus_kind", [
    ((None, DCTERMS.title, None), "dataset"),          # Dataset: title 1..n
    ((None, DCTERMS.description, None), "dataset"),    # Dataset: description 1..n
    ((None, DCAT.accessURL, None), "distribution"),    # Distribution: accessURL 1..n
    ((None, FOAF.name, None), "publisher"),            # Agent: name 1..n
])
def test_removing_a_required_property_is_a_violation(zone, shapes, remove, focus_kind):
    g = _graph(zone["open"] / "daxing-flood-points" / "dcat.ttl")
    assert dcat.validate(g, shapes) and not _violations(dcat.validate(g, shapes))
    s, p, _ = remove
    classes = {"dataset": DCAT.Dataset, "distribution": DCAT.Distribution, "publisher": FOAF.Agent}
    target = next(iter(g.subjects(RDF.type, classes[focus_kind])))
    for o in list(g.objects(target, p)):
        g.remove((target, p, o))
    found = _violations(dcat.validate(g, shapes))
    assert [(r["focus"], r["path"]) for r in found] == [(str(target), str(p))]
    assert "Less than 1 values" in found[0]["message"]


def test_a_wrong_datatype_is_a_violation(zone, shapes):
    g = _graph(zone["open"] / "daxing-flood-points" / "dcat.ttl")
    dist = next(iter(g.subjects(RDF.type, DCAT.Distribution)))
    size = g.value(dist, DCAT.byteSize)
    g.set((dist, DCAT.byteSize, Literal(str(size))))  # a plain string instead of xsd:nonNegativeInteger
    assert [(r["focus"], r["path"]) for r in _violations(dcat.validate(g, shapes))] == [(str(dist), str(DCAT.byteSize))]


# ---------------------------------------------------------------------------------------- content

def test_dataset_description_matches_metadata_contract_and_files(zone):
    open_dir = zone["open"]
    for tc in zone["tables"]:
        ds_id = tc.open_dataset["id"]
        folder = open_dir / ds_id
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        g = _graph(folder / "dcat.ttl")
        ds = URIRef(f"{BASE}{ds_id}/#dataset")
        assert set(g.subjects(RDF.type, DCAT.Dataset)) == {ds}
        assert g.value(ds, DCTERMS.title) == Literal(meta["title"], lang="zh")
        assert g.value(ds, DCTERMS.description) == Literal(meta["description"], lang="zh")
        assert sorted(map(str, g.objects(ds, DCAT.keyword))) == sorted(meta["keywords"])
        assert {str(t) for t in g.objects(ds, DCAT.theme)} == {f"{EU}data-theme/{c}" for c in tc.open_dataset["theme"]}
        publisher = g.value(ds, DCTERMS.publisher)
        assert Literal("北京市大兴区大数据局", lang="zh") in set(g.objects(publisher, FOAF.name))
        contact = g.value(ds, DCAT.contactPoint)
        assert str(g.value(contact, URIRef("http://www.w3.org/2006/vcard/ns#hasEmail"))) == \
            "mailto:" + tc.open_dataset["contact_point"]["email"]
        assert str(g.value(ds, DCTERMS.accrualPeriodicity)) == f"{EU}frequency/DAILY"
        assert str(g.value(ds, DCTERMS.accessRights)) == f"{EU}access-right/PUBLIC"
        assert str(g.value(ds, DCTERMS.modified)) == opendata_sample.AS_OF
        # temporal coverage: the range of the dataset's date column, else its reference date
        rows = list(csv.DictReader(pyio.StringIO((folder / "data.csv").read_text(encoding="utf-8"))))
        days = [r["day"] for r in rows] if "day" in rows[0] else [opendata_sample.AS_OF]
        period = g.value(ds, DCTERMS.temporal)
        assert (str(g.value(period, DCAT.startDate)), str(g.value(period, DCAT.endDate))) == (min(days), max(days))
        spatial = g.value(ds, DCTERMS.spatial)
        assert str(g.value(spatial, DCTERMS.identifier)) == "110115"
        assert str(g.value(spatial, DCAT.bbox)).startswith("POLYGON((116.13 39.44, 116.72 39.44")
        # one distribution per data file, with its URL, media type, format and exact size
        dists = {}
        for dist in g.objects(ds, DCAT.distribution):
            url = str(g.value(dist, DCAT.downloadURL))
            dists[url.rsplit("/", 1)[1]] = dist
            assert url == f"{BASE}{ds_id}/{url.rsplit('/', 1)[1]}" == str(g.value(dist, DCAT.accessURL))
        assert sorted(dists) == sorted(d["file"] for d in meta["distributions"])
        for d in meta["distributions"]:
            dist = dists[d["file"]]
            assert int(g.value(dist, DCAT.byteSize)) == (folder / d["file"]).stat().st_size
            assert str(g.value(dist, DCAT.mediaType)) == "https://www.iana.org/assignments/media-types/" + d["mediaType"]
            assert str(g.value(dist, DCTERMS["format"])) == f"{EU}file-type/" + vocab.FORMATS[d["format"]]["file_type"]
            assert str(g.value(dist, DCTERMS.license)) == f"{EU}licence/CC_BY_4_0"
        assert ("data.geojson" in dists) == bool(tc.open_dataset.get("geojson"))


def test_jsonld_is_the_same_graph_as_turtle(zone):
    for ttl in sorted(zone["open"].glob("*/dcat.ttl")) + [zone["open"] / "catalog.ttl"]:
        g_ttl = _graph(ttl)
        g_json = _graph(ttl.with_suffix(".jsonld"), "json-ld")
        assert len(g_ttl) > 50 and isomorphic(g_ttl, g_json), ttl


def test_catalogue_lists_and_contains_every_dataset(zone):
    cat = _graph(zone["open"] / "catalog.ttl")
    catalog = URIRef(f"{BASE}#catalog")
    assert set(cat.subjects(RDF.type, DCAT.Catalog)) == {catalog}
    ids = sorted(p.parent.name for p in zone["open"].glob("*/dcat.ttl"))
    assert sorted(str(d) for d in cat.objects(catalog, DCAT.dataset)) == [f"{BASE}{i}/#dataset" for i in ids]
    for i in ids:
        ds_graph = _graph(zone["open"] / i / "dcat.ttl")
        assert all(t in cat for t in ds_graph)
    assert str(cat.value(catalog, DCAT.themeTaxonomy)) == f"{EU}data-theme"
    assert str(cat.value(catalog, DCTERMS.modified)) == opendata_sample.AS_OF
    titles = {str(t) for t in cat.objects(catalog, DCTERMS.title)}
    assert dcat.CATALOG_TITLE[0] in titles
    theme = URIRef(f"{EU}data-theme/SOCI")
    assert Literal("人口和社会", lang="zh") in set(cat.objects(theme, SKOS.prefLabel))


def test_ckan_package_list_and_package_show(zone):
    ckan = zone["open"] / "ckan"
    lst = json.loads((ckan / "package_list.json").read_text(encoding="utf-8"))
    ids = sorted(p.parent.name for p in zone["open"].glob("*/dcat.ttl"))
    assert lst["success"] is True and lst["result"] == ids
    for tc in zone["tables"]:
        ds_id = tc.open_dataset["id"]
        meta = json.loads((zone["open"] / ds_id / "metadata.json").read_text(encoding="utf-8"))
        pkg = json.loads((ckan / "package_show" / f"{ds_id}.json").read_text(encoding="utf-8"))
        assert pkg["success"] is True
        r = pkg["result"]
        assert (r["name"], r["title"], r["notes"]) == (ds_id, meta["title"], meta["description"])
        assert r["license_id"] == "cc-by" and r["isopen"] is True
        assert [t["name"] for t in r["tags"]] == meta["keywords"]
        assert [g["name"] for g in r["groups"]] == [t.lower() for t in tc.open_dataset["theme"]]
        assert r["num_resources"] == len(r["resources"]) == len(meta["distributions"])
        for res, d in zip(r["resources"], meta["distributions"]):
            data = (zone["open"] / ds_id / d["file"]).read_bytes()
            assert res["url"] == f"{BASE}{ds_id}/{d['file']}"
            assert (res["format"], res["mimetype"], res["size"]) == (d["format"], d["mediaType"], len(data))
            assert res["hash"] == "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------- idempotence

def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_describing_again_writes_nothing_and_a_change_rewrites_only_its_dataset(tmp_path):
    settings, tables = opendata_sample.build(str(tmp_path / "lake"))
    before = _snapshot(tmp_path / "lake" / "open")
    results = dcat.publish(settings, tables)
    assert results and not any(r["written"] for r in results)
    assert _snapshot(tmp_path / "lake" / "open") == before
    # a changed data file (one more row): its dataset's DCAT (byte size), package and the catalogue change
    csv_path = tmp_path / "lake" / "open" / "daxing-flood-points" / "data.csv"
    csv_path.write_bytes(csv_path.read_bytes() + csv_path.read_bytes().splitlines(keepends=True)[-1])
    written = {r["file"] for r in dcat.publish(settings, tables) if r["written"]}
    assert written == {"open/daxing-flood-points/dcat.ttl", "open/daxing-flood-points/dcat.jsonld",
                       "open/ckan/package_show/daxing-flood-points.json", "open/catalog.ttl", "open/catalog.jsonld"}


def test_same_bytes_in_another_process_with_another_hash_seed(zone, tmp_path):
    """Serialisations are canonical: another interpreter (other set and dict orders) writes the same bytes."""
    copy = tmp_path / "lake"
    shutil.copytree(zone["open"], copy / "open")
    for p in [*copy.glob("open/*/dcat.*"), *copy.glob("open/catalog.*")]:
        p.unlink()
    shutil.rmtree(copy / "open" / "ckan")
    code = ("import sys; sys.path.insert(0, 'tests'); from lake.settings import Settings, REPO; "
            "from lake import contracts as c; from opendata import dcat; import opendata_sample as s; "
            f"st = Settings(root={str(copy)!r}, open_base_url={BASE!r}); cs = c.load(str(REPO / 'contracts')); "
            "dcat.publish(st, [cs.table(t) for t in s.TABLES])")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
    original = {k: v[0] for k, v in _snapshot(zone["open"]).items()}
    again = {k: v[0] for k, v in _snapshot(copy / "open").items()}
    assert again == original


# ---------------------------------------------------------------------------------------- settings and contracts

def test_base_url_setting(tmp_path):
    from lake.settings import Settings

    assert dcat.base_url(Settings(root=str(tmp_path))) == dcat.DEFAULT_BASE_URL
    assert dcat.base_url(Settings(root=str(tmp_path), open_base_url="https://x.example/open")) == "https://x.example/open/"
    with pytest.raises(OpenDataError, match="LAKE_OPEN_BASE_URL must be an http"):
        dcat.base_url(Settings(root=str(tmp_path), open_base_url="data.example.gov.cn"))
    os.environ["LAKE_OPEN_BASE_URL"] = "https://env.example/"
    try:
        assert Settings.from_env().open_base_url == "https://env.example/"
    finally:
        del os.environ["LAKE_OPEN_BASE_URL"]


def test_every_open_contract_has_valid_open_data_keys():
    from lake import contracts as contracts_mod

    opened = [tc for tc in contracts_mod.load(str(REPO / "contracts")).tables.values() if tc.open_type != "none" and tc.open_dataset]
    assert len(opened) >= 6
    for tc in opened:
        od_contract.check(tc)


def _with(tc, **changes):
    od = {**tc.open_dataset, **changes}
    return dataclasses.replace(tc, open_dataset={k: v for k, v in od.items() if v is not None})


@pytest.mark.parametrize("changes, message", [
    ({"theme": None}, "needs 'theme'"),
    ({"theme": ["POPU"]}, "unknown EU data theme(s) ['POPU']"),
    ({"contact_point": None}, "needs 'contact_point'"),
    ({"contact_point": {"name": "x", "mail": "a@b.cn"}}, "contact_point has keys ['mail', 'name']"),
    ({"contact_point": {"name": "x", "email": "not-an-address"}}, "is not an e-mail address"),
    ({"chart": None}, "open_dataset.chart is missing"),
    ({"chart": {"x": "town", "y": "people"}}, "chart.y names column 'people'"),
    ({"chart": {"x": "town", "y": "persons", "aggregate": "sum"}}, "unknown key(s) ['aggregate']"),
    ({"chart": {"x": "town", "y": "persons", "agg": "median"}}, "agg 'median' is not one of"),
    ({"chart": {"x": "town", "y": "persons", "where": {"sex": "女"}}}, "chart.where.sex names column 'sex'"),
])
def test_bad_open_dataset_keys_are_one_line_errors_naming_file_and_key(zone, changes, message):
    tc = _with(zone["tables"][0], **changes)
    with pytest.raises(OpenDataError) as e:
        od_contract.check(tc)
    assert message in str(e.value) and "topic_population_by_town_age_band.yaml" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_distribution_without_its_file_is_an_error(zone):
    tc = zone["tables"][0]
    meta = json.loads((zone["open"] / tc.open_dataset["id"] / "metadata.json").read_text(encoding="utf-8"))
    with pytest.raises(OpenDataError, match="lists 'data.json', which is not in the dataset's folder"):
        dcat.describe(meta, {"data.csv": b"town\n"}, tc)


def test_directed_dataset_is_described_without_download_urls(zone, shapes):
    """Directed (conditional) opening: the description is public, the files are reached through the
    dataset's page (an application), never a download URL; still valid DCAT-AP 3."""
    tc = next(t for t in zone["tables"] if t.open_dataset["id"] == "daxing-flood-points")
    directed = dataclasses.replace(tc, open_type="directed")
    meta, files = dcat.read_folder(zone["settings"], "daxing-flood-points")
    model = dcat.describe(meta, files, directed)
    g = dcat.dataset_graph(model, BASE)
    ds = URIRef(f"{BASE}daxing-flood-points/#dataset")
    assert str(g.value(ds, DCTERMS.accessRights)) == f"{EU}access-right/RESTRICTED"
    dists = list(g.objects(ds, DCAT.distribution))
    assert len(dists) == 3 and not list(g.objects(None, DCAT.downloadURL))
    assert {str(g.value(d, DCAT.accessURL)) for d in dists} == {f"{BASE}daxing-flood-points/"}
    assert _violations(dcat.validate(g, shapes)) == []
    from opendata import ckan

    pkg = ckan.package_show(model, BASE)["result"]
    assert pkg["isopen"] is False and {r["url"] for r in pkg["resources"]} == {f"{BASE}daxing-flood-points/"}


@pytest.mark.parametrize("extra, words", [
    ({"quasi_identifiers": ["town", "age_band", "gender"], "k": 5}, "准标识符（town、age_band、gender）满足 k-匿名，k ≥ 5。"),
    ({"suppression": "complementary"}, "小单元格保护：complementary。"),
    ({}, "计数列（persons）中小于5的值已抑制（留空）。"),
])
def test_provenance_names_how_people_are_protected(zone, extra, words):
    tc = zone["tables"][0]
    meta, files = dcat.read_folder(zone["settings"], tc.open_dataset["id"])
    model = dcat.describe({**meta, **extra}, files, tc)
    assert model.provenance.endswith(words)
