"""DCAT-AP 3 descriptions of the open zone, built with rdflib.

For every open dataset folder ``<root>/open/<id>/`` (written by ``jobs.publish.open.publish_open``):
``dcat.ttl`` and ``dcat.jsonld`` describe it as a dcat:Dataset with one dcat:Distribution per data
file; ``<root>/open/catalog.ttl`` and ``catalog.jsonld`` are the dcat:Catalog of every dataset that
has a ``dcat.ttl``; ``<root>/open/ckan/`` holds a CKAN-compatible ``package_list.json`` and one
``package_show/<id>.json`` per dataset (``opendata.ckan``).

What a description is made of: the dataset's ``metadata.json`` (title, description, keywords,
publisher, licence, update frequency, spatial and temporal coverage, columns and the list of
distributions), the files themselves (byte size, sha256, the date range of a ``date`` column) and
the contract's ``open_dataset`` (``theme``, ``contact_point``; see ``opendata.contract``).

Download URLs are ``<base URL><id>/<file>``, the base URL being ``LAKE_OPEN_BASE_URL`` (where the
portal, which mirrors the open zone, is served). Every node has an IRI (no blank nodes) and the
serialisations are canonical, so describing unchanged files again gives the same bytes and
``lake.io.write_if_changed`` leaves them alone. Validated in the tests with pyshacl against the
official DCAT-AP 3.0.1 shapes shipped in ``opendata/shacl/``.
"""
from __future__ import annotations

import csv
import hashlib
import io as pyio
import json
from dataclasses import dataclass
from urllib.parse import urlparse

from rdflib import RDF, RDFS, XSD, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, SKOS

from lake import io
from lake.contracts import TableContract
from lake.log import log
from lake.settings import Settings
from opendata import contract as od_contract
from opendata import vocab
from opendata.contract import OpenDataError

DCATAP = Namespace("http://data.europa.eu/r5r/")
GSP = Namespace("http://www.opengis.net/ont/geosparql#")
LOCN = Namespace("http://www.w3.org/ns/locn#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
PREFIXES = {"dcat": DCAT, "dct": DCTERMS, "foaf": FOAF, "skos": SKOS, "vcard": VCARD, "xsd": XSD, "rdfs": RDFS,
            "dcatap": DCATAP, "gsp": GSP, "locn": LOCN}
JSONLD_CONTEXT = {p: str(ns) for p, ns in PREFIXES.items()}

DEFAULT_BASE_URL = "http://127.0.0.1:8000/"
DATASET_FILES = ("dcat.ttl", "dcat.jsonld")
CATALOG_FILES = ("catalog.ttl", "catalog.jsonld")
CATALOG_TITLE = ("北京市大兴区公共数据开放目录", "Daxing District open data catalogue")
CATALOG_DESCRIPTION = ("北京市大兴区大数据局开放的公共数据：由各部门数据经一数一源治理、质量门禁和小单元格抑制后形成的统计与地理数据集。",
                       "Public data opened by the Daxing District Big Data Bureau: statistical and geographic datasets "
                       "built from department data through one-number-one-source governance, quality gates and "
                       "small-cell suppression.")


def base_url(settings: Settings) -> str:
    """The public URL the open zone is served at, ending in '/' (``LAKE_OPEN_BASE_URL``)."""
    url = getattr(settings, "open_base_url", "") or DEFAULT_BASE_URL
    p = urlparse(url)
    if p.scheme not in ("http", "https") or not p.netloc:
        raise OpenDataError(f"LAKE_OPEN_BASE_URL must be an http(s) URL such as https://data.example.gov.cn/daxing/, got '{url}'")
    return url if url.endswith("/") else url + "/"


# ---------------------------------------------------------------------------------------- model

@dataclass(frozen=True)
class Distribution:
    file: str
    format: str
    media_type: str
    file_type: str
    title: str
    byte_size: int
    sha256: str
    note: str  # encoding, coordinate system


@dataclass(frozen=True)
class DatasetModel:
    """One open dataset as the DCAT description, the CKAN package and the portal see it."""
    id: str
    title: str
    description: str
    keywords: tuple[str, ...]
    themes: tuple[str, ...]
    publisher_zh: str
    publisher_en: str
    contact_name: str
    contact_email: str
    licence: str
    frequency: str
    access: str
    modified: str
    temporal: tuple[str, str] | None
    spatial: dict
    provenance: str
    distributions: tuple[Distribution, ...]

    @property
    def public(self) -> bool:
        """Opened unconditionally: its files are downloadable by anyone (directed opening is not)."""
        return self.access == "unconditional"

    def iri(self, base: str, fragment: str = "") -> URIRef:
        return URIRef(f"{base}{self.id}/" + (f"#{fragment}" if fragment else ""))


def describe(meta: dict, files: dict[str, bytes], tc: TableContract) -> DatasetModel:
    """The model of a dataset from its ``metadata.json`` (parsed), its files (name -> bytes) and its contract."""
    od_contract.check(tc)
    od = tc.open_dataset
    where = f"open/{meta.get('identifier', '?')}/metadata.json"
    for key in ("identifier", "title", "description", "publisher", "license", "distributions", "columns"):
        if not meta.get(key):
            raise OpenDataError(f"{where} has no '{key}'")
    if meta["identifier"] != od.get("id"):
        raise OpenDataError(f"{where}: identifier '{meta['identifier']}' is not the contract's open_dataset.id '{od.get('id')}'")
    if meta["license"] not in vocab.LICENCES:
        raise OpenDataError(f"{where}: licence '{meta['license']}' has no DCAT mapping; known: {', '.join(vocab.LICENCES)}")
    if tc.update_cycle not in vocab.FREQUENCIES:
        raise OpenDataError(f"{tc.path}: update_cycle '{tc.update_cycle}' has no EU frequency; known: {', '.join(vocab.FREQUENCIES)}")
    if tc.open_type not in vocab.ACCESS_RIGHTS:
        raise OpenDataError(f"{tc.path}: open_type '{tc.open_type}' is not opened (known: {', '.join(vocab.ACCESS_RIGHTS)})")
    dists = []
    for d in meta["distributions"]:
        fmt, name = d.get("format"), d.get("file")
        if fmt not in vocab.FORMATS:
            raise OpenDataError(f"{where}: distribution '{name}' has format '{fmt}'; known: {', '.join(vocab.FORMATS)}")
        if name not in files:
            raise OpenDataError(f"{where} lists '{name}', which is not in the dataset's folder")
        f = vocab.FORMATS[fmt]
        if d.get("mediaType") and d["mediaType"] != f["media_type"]:
            raise OpenDataError(f"{where}: '{name}' has mediaType '{d['mediaType']}', expected '{f['media_type']}' for {fmt}")
        data = files[name]
        note = "；".join(x for x in (d.get("encoding") and f"编码 {d['encoding']}", d.get("crs") and f"坐标系 {d['crs']}") if x)
        dists.append(Distribution(name, fmt, f["media_type"], f["file_type"], f["title"], len(data),
                                  hashlib.sha256(data).hexdigest(), note))
    zh, _, en = meta["publisher"].partition(" (")
    modified = str(meta.get("modified") or "")
    provenance = (f"来源：{meta.get('source_table', tc.table)}；发布前通过 Great Expectations 质量门禁，"
                  "并检查不含身份证号和手机号。" + _suppression_note(meta, od))
    return DatasetModel(
        id=meta["identifier"], title=meta["title"], description=meta["description"],
        keywords=tuple(meta.get("keywords") or ()), themes=tuple(od["theme"]),
        publisher_zh=zh.strip(), publisher_en=en.rstrip(")").strip(),
        contact_name=str(od["contact_point"]["name"]), contact_email=str(od["contact_point"]["email"]),
        licence=meta["license"], frequency=tc.update_cycle, access=tc.open_type, modified=modified,
        temporal=_temporal(meta, files), spatial=dict(meta.get("spatial") or {}), provenance=provenance,
        distributions=tuple(dists),
    )


def _suppression_note(meta: dict, od: dict) -> str:
    """How the people behind the data are protected: a record-level dataset's ``quasi_identifiers``
    and ``k`` (metadata.json), an aggregate's ``suppression`` method, else the primary suppression
    ``jobs.publish.open`` applies to the contract's ``count_columns`` (its threshold in metadata.json)."""
    if meta.get("quasi_identifiers") and meta.get("k"):
        return f"记录级数据：按准标识符（{'、'.join(map(str, meta['quasi_identifiers']))}）满足 k-匿名，k ≥ {meta['k']}。"
    if meta.get("suppression"):
        method = meta["suppression"]
        method = method if isinstance(method, str) else json.dumps(method, ensure_ascii=False, sort_keys=True)
        return f"小单元格保护：{method}。"
    if od.get("count_columns") and meta.get("small_cell_threshold"):
        return f"计数列（{'、'.join(od['count_columns'])}）中小于{meta['small_cell_threshold']}的值已抑制（留空）。"
    return ""


def _temporal(meta: dict, files: dict[str, bytes]) -> tuple[str, str] | None:
    """The period a dataset covers: ``temporal: {start, end}`` if metadata.json gives it; else the
    range of its first ``date`` column in data.csv; else its reference date (a snapshot)."""
    t = meta.get("temporal") or {}
    if t.get("start") and t.get("end"):
        return str(t["start"]), str(t["end"])
    date_cols = [c["name"] for c in meta.get("columns", []) if c.get("type") == "date"]
    if date_cols and "data.csv" in files:
        rows = csv.DictReader(pyio.StringIO(files["data.csv"].decode("utf-8")))
        days = sorted({r[date_cols[0]] for r in rows if r.get(date_cols[0])})
        if days:
            return days[0], days[-1]
    as_of = t.get("as_of") or meta.get("modified")
    return (str(as_of), str(as_of)) if as_of else None


# ---------------------------------------------------------------------------------------- RDF

def _date(value: str) -> Literal:
    return Literal(value, datatype=XSD.dateTime if "T" in value else XSD.date)


def _concept(g: Graph, iri: str, scheme: str, en: str, zh: str, *types) -> URIRef:
    node = URIRef(iri)
    g.add((node, RDF.type, SKOS.Concept))
    for t in types:
        g.add((node, RDF.type, t))
    g.add((node, SKOS.inScheme, URIRef(scheme)))
    g.add((node, SKOS.prefLabel, Literal(en, lang="en")))
    g.add((node, SKOS.prefLabel, Literal(zh, lang="zh")))
    s = URIRef(scheme)
    g.add((s, RDF.type, SKOS.ConceptScheme))
    g.add((s, DCTERMS.title, Literal(vocab.SCHEMES[scheme], lang="en")))
    return node


def _new_graph() -> Graph:
    g = Graph()
    for p, ns in PREFIXES.items():
        g.bind(p, ns, override=True)
    return g


def publisher_node(g: Graph, base: str, zh: str, en: str) -> URIRef:
    node = URIRef(f"{base}#publisher")
    g.add((node, RDF.type, FOAF.Agent))
    g.add((node, RDF.type, FOAF.Organization))
    g.add((node, FOAF.name, Literal(zh, lang="zh")))
    if en:
        g.add((node, FOAF.name, Literal(en, lang="en")))
    pt, pt_en, pt_zh = vocab.PUBLISHER_TYPE
    g.add((node, DCTERMS.type, _concept(g, pt, vocab.PUBLISHER_TYPE_SCHEME, pt_en, pt_zh)))
    return node


def spatial_node(g: Graph, base: str, spatial: dict) -> URIRef:
    code = spatial.get("admin_code", "area")
    node = URIRef(f"{base}#spatial-{code}")
    g.add((node, RDF.type, DCTERMS.Location))
    if spatial.get("name"):
        g.add((node, SKOS.prefLabel, Literal(spatial["name"], lang="zh")))
    if spatial.get("admin_code"):
        g.add((node, DCTERMS.identifier, Literal(str(spatial["admin_code"]))))
    bbox = spatial.get("bbox_wgs84")
    if bbox and len(bbox) == 4:
        w, s, e, n = (float(v) for v in bbox)
        g.add((node, DCAT.bbox, Literal(f"POLYGON(({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}))", datatype=GSP.wktLiteral)))
        g.add((node, DCAT.centroid, Literal(f"POINT({round((w + e) / 2, 6)} {round((s + n) / 2, 6)})", datatype=GSP.wktLiteral)))
    return node


def licence_node(g: Graph, licence: str) -> URIRef:
    lic = vocab.LICENCES[licence]
    node = _concept(g, lic["uri"], vocab.EU + "licence", lic["label"], lic["zh"], DCTERMS.LicenseDocument)
    g.add((node, DCTERMS.type, _concept(g, lic["type"], vocab.LICENCE_TYPE_SCHEME, lic["type_label"], "署名")))
    return node


def language_node(g: Graph) -> URIRef:
    iri, en, zh = vocab.LANGUAGE
    return _concept(g, iri, vocab.EU + "language", en, zh, DCTERMS.LinguisticSystem)


def dataset_graph(m: DatasetModel, base: str) -> Graph:
    """The DCAT-AP 3 graph of one dataset (with the nodes it refers to, typed and labelled)."""
    g = _new_graph()
    ds = m.iri(base, "dataset")
    landing = m.iri(base)
    g.add((ds, RDF.type, DCAT.Dataset))
    g.add((ds, DCTERMS.identifier, Literal(m.id)))
    g.add((ds, DCTERMS.title, Literal(m.title, lang="zh")))
    g.add((ds, DCTERMS.description, Literal(m.description, lang="zh")))
    for k in m.keywords:
        g.add((ds, DCAT.keyword, Literal(k, lang="zh")))
    for code in m.themes:
        en, zh = vocab.THEMES[code]
        g.add((ds, DCAT.theme, _concept(g, f"{vocab.EU}data-theme/{code}", vocab.EU + "data-theme", en, zh)))
    g.add((ds, DCTERMS.publisher, publisher_node(g, base, m.publisher_zh, m.publisher_en)))
    contact = m.iri(base, "contact")
    g.add((contact, RDF.type, VCARD.Kind))
    g.add((contact, RDF.type, VCARD.Organization))
    g.add((contact, VCARD.fn, Literal(m.contact_name, lang="zh")))
    g.add((contact, VCARD.hasEmail, URIRef(f"mailto:{m.contact_email}")))
    g.add((ds, DCAT.contactPoint, contact))
    if m.temporal:
        period = m.iri(base, "temporal")
        g.add((period, RDF.type, DCTERMS.PeriodOfTime))
        g.add((period, DCAT.startDate, _date(m.temporal[0])))
        g.add((period, DCAT.endDate, _date(m.temporal[1])))
        g.add((ds, DCTERMS.temporal, period))
    if m.spatial:
        g.add((ds, DCTERMS.spatial, spatial_node(g, base, m.spatial)))
    code, en, zh = vocab.FREQUENCIES[m.frequency]
    g.add((ds, DCTERMS.accrualPeriodicity,
           _concept(g, f"{vocab.EU}frequency/{code}", vocab.EU + "frequency", en, zh, DCTERMS.Frequency)))
    code, en, zh = vocab.ACCESS_RIGHTS[m.access]
    g.add((ds, DCTERMS.accessRights,
           _concept(g, f"{vocab.EU}access-right/{code}", vocab.EU + "access-right", en, zh, DCTERMS.RightsStatement)))
    if m.modified:
        g.add((ds, DCTERMS.modified, _date(m.modified)))
    g.add((ds, DCTERMS.language, language_node(g)))
    g.add((landing, RDF.type, FOAF.Document))
    g.add((ds, DCAT.landingPage, landing))
    prov = m.iri(base, "provenance")
    g.add((prov, RDF.type, DCTERMS.ProvenanceStatement))
    g.add((prov, RDFS.label, Literal(m.provenance, lang="zh")))
    g.add((ds, DCTERMS.provenance, prov))
    lic = licence_node(g, m.licence)
    av_iri, av_en, av_zh = vocab.AVAILABILITY
    availability = _concept(g, av_iri, vocab.EU + "planned-availability", av_en, av_zh)
    for d in m.distributions:
        node = m.iri(base, "distribution-" + d.file.replace(".", "-"))
        url = URIRef(f"{base}{m.id}/{d.file}")
        g.add((ds, DCAT.distribution, node))
        g.add((node, RDF.type, DCAT.Distribution))
        g.add((node, DCTERMS.title, Literal(f"{m.title}（{d.title}）", lang="zh")))
        g.add((node, DCTERMS.description, Literal(f"{d.file}：{d.title}" + (f"，{d.note}" if d.note else ""), lang="zh")))
        if m.public:
            g.add((node, DCAT.accessURL, url))
            g.add((node, DCAT.downloadURL, url))
        else:  # directed opening: reached through the dataset's page (an application), not downloaded
            g.add((node, DCAT.accessURL, landing))
        media = URIRef(vocab.IANA + d.media_type)
        g.add((media, RDF.type, DCTERMS.MediaType))
        g.add((node, DCAT.mediaType, media))
        fmt = _concept(g, f"{vocab.EU}file-type/{d.file_type}", vocab.EU + "file-type", d.file_type, d.format,
                       DCTERMS.MediaTypeOrExtent)
        g.add((node, DCTERMS.format, fmt))
        g.add((node, DCAT.byteSize, Literal(d.byte_size, datatype=XSD.nonNegativeInteger)))
        g.add((node, DCTERMS.license, lic))
        g.add((node, DCATAP.availability, availability))
        if m.modified:
            g.add((node, DCTERMS.modified, _date(m.modified)))
    return g


def catalog_graph(datasets: list[Graph], base: str, modified: str, spatial: dict | None, licence: str,
                  publisher: tuple[str, str]) -> Graph:
    """The dcat:Catalog of ``datasets`` (their graphs merged in, each listed with dcat:dataset)."""
    g = _new_graph()
    for d in datasets:
        g += d
    cat = URIRef(f"{base}#catalog")
    g.add((cat, RDF.type, DCAT.Catalog))
    g.add((cat, DCTERMS.title, Literal(CATALOG_TITLE[0], lang="zh")))
    g.add((cat, DCTERMS.title, Literal(CATALOG_TITLE[1], lang="en")))
    g.add((cat, DCTERMS.description, Literal(CATALOG_DESCRIPTION[0], lang="zh")))
    g.add((cat, DCTERMS.description, Literal(CATALOG_DESCRIPTION[1], lang="en")))
    g.add((cat, DCTERMS.publisher, publisher_node(g, base, *publisher)))
    g.add((cat, DCTERMS.language, language_node(g)))
    g.add((cat, DCTERMS.license, licence_node(g, licence)))
    home = URIRef(base)
    g.add((home, RDF.type, FOAF.Document))
    g.add((cat, FOAF.homepage, home))
    g.add((cat, DCAT.themeTaxonomy, URIRef(vocab.EU + "data-theme")))
    g.add((URIRef(vocab.EU + "data-theme"), RDF.type, SKOS.ConceptScheme))
    g.add((URIRef(vocab.EU + "data-theme"), DCTERMS.title, Literal(vocab.SCHEMES[vocab.EU + "data-theme"], lang="en")))
    if spatial:
        g.add((cat, DCTERMS.spatial, spatial_node(g, base, spatial)))
    if modified:
        g.add((cat, DCTERMS.modified, _date(modified)))
    for ds in sorted(g.subjects(RDF.type, DCAT.Dataset)):
        g.add((cat, DCAT.dataset, ds))
    return g


# ---------------------------------------------------------------------------------------- bytes

def turtle(g: Graph) -> bytes:
    return g.serialize(format="turtle", encoding="utf-8")


def jsonld(g: Graph) -> bytes:
    """JSON-LD, compacted with the prefixes above, with every unordered array sorted: the same graph
    always gives the same bytes."""
    doc = json.loads(g.serialize(format="json-ld", context=JSONLD_CONTEXT, auto_compact=True))
    context = doc.pop("@context", JSONLD_CONTEXT)
    nodes = doc.get("@graph", [doc] if doc else [])
    body = _canonical(nodes)
    return (json.dumps({"@context": context, "@graph": body}, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _canonical(x):
    if isinstance(x, dict):
        return {k: _canonical(v) for k, v in x.items()}
    if isinstance(x, list):
        items = [_canonical(v) for v in x]
        return sorted(items, key=lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True))
    return x


def parse_turtle(data: bytes) -> Graph:
    g = _new_graph()
    g.parse(data=data.decode("utf-8"), format="turtle")
    return g


# ---------------------------------------------------------------------------------------- the lake

def read_folder(settings: Settings, dataset_id: str) -> tuple[dict, dict[str, bytes]]:
    """``metadata.json`` (parsed) and the data files it lists, of ``<root>/open/<dataset_id>/``."""
    folder = settings.path("open", dataset_id)
    meta_uri = f"{folder}/metadata.json"
    if not io.file_exists(meta_uri):
        raise OpenDataError(f"{meta_uri} does not exist; publish the open zone first (lake publish)")
    try:
        meta = json.loads(io.read_bytes(meta_uri))
    except ValueError as e:
        raise OpenDataError(f"{meta_uri} is not valid JSON: {e}") from None
    files = {}
    for d in meta.get("distributions") or []:
        uri = f"{folder}/{d.get('file')}"
        if io.file_exists(uri):
            files[d["file"]] = io.read_bytes(uri)
    return meta, files


def dataset_folders(settings: Settings) -> list[str]:
    """Ids of the dataset folders under ``<root>/open/`` (those with a metadata.json)."""
    import pyarrow.fs as pafs

    fs, path = io.filesystem(settings.path("open"))
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    ids = [i.base_name for i in infos if i.type == pafs.FileType.Directory]
    return sorted(i for i in ids if io.file_exists(settings.path("open", i, "metadata.json")))


def publish(settings: Settings, tables: list[TableContract]) -> list[dict]:
    """Write ``dcat.ttl``, ``dcat.jsonld`` and the CKAN package of every open dataset of ``tables``,
    then the catalogue and the CKAN package list of every dataset folder that has a ``dcat.ttl``.
    Files whose bytes would not change are not rewritten. Returns one row per file written or kept."""
    from opendata import ckan

    base = base_url(settings)
    out = []
    for tc in sorted(tables, key=lambda t: t.open_dataset["id"]):
        ds_id = tc.open_dataset["id"]
        meta, files = read_folder(settings, ds_id)
        model = describe(meta, files, tc)
        g = dataset_graph(model, base)
        docs = {"dcat.ttl": turtle(g), "dcat.jsonld": jsonld(g)}
        for name, data in docs.items():
            out.append({"file": f"open/{ds_id}/{name}", "written": io.write_if_changed(settings.path("open", ds_id, name), data)})
        pkg = json.dumps(ckan.package_show(model, base), ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")
        out.append({"file": f"open/ckan/package_show/{ds_id}.json",
                    "written": io.write_if_changed(settings.path("open", "ckan", "package_show", f"{ds_id}.json"), pkg)})
    out += publish_catalog(settings)
    for o in out:
        if o["written"]:
            log.info("%s: written", o["file"])
    return out


def publish_catalog(settings: Settings) -> list[dict]:
    """``catalog.ttl``/``catalog.jsonld`` and ``ckan/package_list.json`` from every ``open/*/dcat.ttl``."""
    from opendata import ckan

    base = base_url(settings)
    graphs, ids, modified, spatial, licence, publisher = [], [], "", None, "CC-BY-4.0", ("", "")
    for ds_id in dataset_folders(settings):
        uri = settings.path("open", ds_id, "dcat.ttl")
        if not io.file_exists(uri):
            continue
        graphs.append(parse_turtle(io.read_bytes(uri)))
        ids.append(ds_id)
        meta = json.loads(io.read_bytes(settings.path("open", ds_id, "metadata.json")))
        modified = max(modified, str(meta.get("modified") or ""))
        spatial = spatial or meta.get("spatial")
        licence = meta.get("license", licence)
        zh, _, en = str(meta.get("publisher", "")).partition(" (")
        publisher = publisher if publisher[0] else (zh.strip(), en.rstrip(")").strip())
    if not graphs:
        return []
    g = catalog_graph(graphs, base, modified, spatial, licence, publisher)
    docs = {"catalog.ttl": turtle(g), "catalog.jsonld": jsonld(g)}
    out = [{"file": f"open/{n}", "written": io.write_if_changed(settings.path("open", n), b)} for n, b in docs.items()]
    lst = json.dumps(ckan.package_list(ids), ensure_ascii=False, indent=1).encode("utf-8")
    out.append({"file": "open/ckan/package_list.json",
                "written": io.write_if_changed(settings.path("open", "ckan", "package_list.json"), lst)})
    return out


# ---------------------------------------------------------------------------------------- SHACL

SHACL_DIR = __import__("pathlib").Path(__file__).resolve().parent / "shacl"
SHAPE_FILES = ("shapes.ttl", "range.ttl", "mdr-vocabularies.shape.ttl", "shapes_recommended.ttl")


def shapes_graph() -> Graph:
    """The official DCAT-AP 3.0.1 shapes (opendata/shacl/README.md says where they come from)."""
    g = Graph()
    for name in SHAPE_FILES:
        g.parse(SHACL_DIR / name, format="turtle")
    return g


def validate(data: Graph, shapes: Graph | None = None) -> list[dict]:
    """Validate ``data`` with pyshacl; one dict per result: severity (Violation, Warning, Info), focus
    node, path, value and message (the details of a failed sh:node are part of the result naming it,
    with that result's severity). No inference: the data must state its classes itself."""
    from pyshacl import validate as shacl_validate
    from rdflib.namespace import SH

    _, report, _ = shacl_validate(data, shacl_graph=shapes if shapes is not None else shapes_graph(),
                                  inference="none", advanced=True, allow_warnings=True)
    out = []
    for r in report.subjects(RDF.type, SH.ValidationResult):
        if (None, SH.detail, r) in report:  # why a sh:node failed: part of the result that names it
            continue
        def one(p):
            v = report.value(r, p)
            return None if v is None else str(v)
        out.append({"severity": one(SH.resultSeverity).rsplit("#", 1)[-1], "focus": one(SH.focusNode),
                    "path": one(SH.resultPath), "value": one(SH.value), "message": one(SH.resultMessage),
                    "shape": one(SH.sourceShape)})
    return sorted(out, key=lambda x: (x["severity"], x["focus"] or "", x["path"] or ""))
