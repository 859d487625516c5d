"""The open-data portal: a static site built from the open zone, Chinese throughout.

``lake portal build --out DIR`` writes DIR/index.html (every dataset, searchable in the browser over
title, description, keywords and column names and titles) and one page per dataset,
DIR/<id>/index.html: description, downloads, a chart of its main measure (the contract's
``open_dataset.chart``), a map drawn from its data.geojson (Leaflet with the GeoJSON layer only, no
tile server), the column table, a preview of its first rows, the last quality-gate result of its
source table (``quality/validations``, the gate run named by the table's last Delta commit) and its
DCAT-AP 3 metadata as a table and as files. The site mirrors the open zone (DIR/<id>/data.csv is
``<root>/open/<id>/data.csv``; DIR/catalog.ttl, DIR/ckan/), so the DCAT download URLs resolve when DIR
is served at ``LAKE_OPEN_BASE_URL``. JavaScript and CSS come from the npm packages pinned in
opendata/web/package.json (installed by ./setup.sh with ``npm ci``) and are copied into DIR/assets/:
nothing is fetched from another site when a page is viewed. The data a page draws is embedded in it,
so the site also works opened from the disk. Building twice from the same lake gives the same bytes.

A dataset under directed opening (``open_type: directed``) shows its description, columns, gate and
metadata only: its data files are neither copied nor linked (its DCAT distributions have no download
URL either; the application procedure is issue 15's directed opening).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import io as pyio
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lake import contracts as contracts_mod
from lake import io
from lake.settings import Settings
from opendata import contract as od_contract
from opendata import dcat, vocab
from opendata.contract import OpenDataError

HERE = Path(__file__).resolve().parent
WEB = HERE / "web"
NODE_MODULES = WEB / "node_modules"
TEMPLATES = HERE / "templates"
MARKER = ".lake-portal"  # marks a folder this command built (and may therefore replace)
RESERVED = {"assets", "ckan", "index.html", "catalog.ttl", "catalog.jsonld", MARKER}
SITE_TITLE = "北京市大兴区公共数据开放平台"
DESCRIPTION_FILES = ("metadata.json", "dcat.ttl", "dcat.jsonld")  # public even for directed opening
PREVIEW_ROWS = 20
CELL_CHARS = 60
BEIJING = timezone(timedelta(hours=8))

# npm package -> (file in the package, where it goes under assets/vendor/)
VENDOR = {
    "@picocss/pico": [("css/pico.min.css", "pico/pico.min.css"), ("LICENSE.md", "pico/LICENSE.md")],
    "echarts": [("dist/echarts.min.js", "echarts/echarts.min.js"), ("LICENSE", "echarts/LICENSE"), ("NOTICE", "echarts/NOTICE")],
    "leaflet": [(f"dist/{f}", f"leaflet/{f}") for f in (
        "leaflet.js", "leaflet.js.map", "leaflet.css", "images/layers.png", "images/layers-2x.png",
        "images/marker-icon.png", "images/marker-icon-2x.png", "images/marker-shadow.png")] + [("LICENSE", "leaflet/LICENSE")],
    "minisearch": [("dist/umd/index.js", "minisearch/index.js"), ("dist/umd/index.js.map", "minisearch/index.js.map"),
                   ("LICENSE.txt", "minisearch/LICENSE.txt")],
}

GX_LABELS = {
    "expect_table_columns_to_match_set": "列与数据契约一致",
    "expect_column_values_to_not_be_null": "不为空",
    "expect_column_values_to_be_unique": "取值唯一",
    "expect_compound_columns_to_be_unique": "组合键唯一",
    "expect_column_values_to_match_regex": "符合格式",
    "expect_column_values_to_not_match_regex": "不含敏感格式（身份证号、手机号）",
    "expect_column_values_to_be_in_set": "取值在允许范围内",
    "expect_column_values_to_be_between": "数值在范围内",
    "expect_table_row_count_to_be_between": "行数在范围内",
}
AGG_LABELS = {"sum": "合计", "mean": "平均", "max": "最大", "min": "最小", "count": "行数"}
TYPE_LABELS = {"string": "文本", "long": "整数", "int": "整数", "integer": "整数", "double": "小数", "float": "小数",
               "date": "日期", "timestamp": "时间", "boolean": "是/否"}


# ------------------------------------------------------------------------------------- vendored files

def vendor_files() -> dict[str, Path]:
    """The files to copy into assets/vendor/ (site path -> installed file); a one-line error when the
    npm packages are missing or not the versions package.json pins."""
    pinned = json.loads((WEB / "package.json").read_text(encoding="utf-8"))["dependencies"]
    if not NODE_MODULES.is_dir():
        if shutil.which("npm") is None:
            raise OpenDataError("npm is not installed: the portal's JavaScript and CSS come from npm packages "
                                "(opendata/web/package.json); install Node.js with npm, then run ./setup.sh")
        raise OpenDataError(f"the portal's npm packages are not installed in {NODE_MODULES}; run ./setup.sh (npm ci)")
    out = {}
    for pkg, files in VENDOR.items():
        meta = NODE_MODULES / pkg / "package.json"
        version = json.loads(meta.read_text(encoding="utf-8")).get("version") if meta.is_file() else None
        if version != pinned.get(pkg):
            raise OpenDataError(f"npm package {pkg} is {version or 'missing'} in {NODE_MODULES}, package.json pins "
                                f"{pinned.get(pkg)}; run ./setup.sh (npm ci)")
        for f, dst in files:
            src = NODE_MODULES / pkg / f
            if not src.is_file():
                raise OpenDataError(f"{src} is missing; run ./setup.sh (npm ci)")
            out[f"assets/vendor/{dst}"] = src
    for f in ("portal.js", "portal.css"):
        out[f"assets/{f}"] = WEB / "src" / f
    return out


# ------------------------------------------------------------------------------------- lake reads

def gate_result(settings: Settings, table: str) -> dict | None:
    """The last quality-gate run of ``table`` (``zone.name``): the run named by the table's latest
    Delta commit (``gate_run_id``) and its rows in ``quality/validations``; None when either is missing."""
    from deltalake.exceptions import TableNotFoundError

    if table.count(".") != 1:
        return None
    try:
        dt = io.delta_table(settings.path(*table.split(".")))
        commit = dt.history(1)[0]
    except TableNotFoundError:
        return None
    try:
        meta = json.loads(commit.get("userMetadata") or "{}")
    except ValueError:
        meta = {}
    run_id = meta.get("gate_run_id")
    if not run_id:
        return None
    try:
        import pyarrow.dataset as pads

        vt = io.delta_table(settings.path("quality", "validations")).to_pyarrow_dataset()
        rows = vt.to_table(filter=(pads.field("run_id") == run_id) & (pads.field("table") == table)).to_pylist()
    except TableNotFoundError:
        rows = []
    if not rows:
        return None
    out = []
    for r in sorted(rows, key=lambda r: (r["expectation"] != "expect_table_columns_to_match_set", r["expectation"],
                                         r["column"] or "", r["kwargs"] or "")):
        kwargs = json.loads(r["kwargs"] or "{}")
        shown = {k: v for k, v in kwargs.items() if k not in ("column", "column_list", "result_format", "column_set")}
        out.append({"label": GX_LABELS.get(r["expectation"], r["expectation"]), "expectation": r["expectation"],
                    "column": r["column"], "success": bool(r["success"]), "unexpected": r["unexpected_count"],
                    "elements": r["element_count"],
                    "kwargs": _short(json.dumps(shown, ensure_ascii=False, sort_keys=True), 90) if shown else ""})
    ts = commit.get("timestamp")
    published = (datetime.fromtimestamp(ts / 1000, BEIJING).strftime("%Y-%m-%d %H:%M（北京时间）") if ts else "—")
    failed = sum(not r["success"] for r in out)
    return {"table": table, "run_id": run_id, "version": dt.version(), "published_at": published,
            "rows": out, "passed": failed == 0, "failed": failed}


def _cell(text: str, kind: str | None) -> str:
    """A preview cell: booleans in Chinese, long text shortened."""
    if kind == "boolean" and text in ("True", "False"):
        return "是" if text == "True" else "否"
    return _short(text)


def _short(text: str, n: int = CELL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} 字节"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


# ------------------------------------------------------------------------------------- chart, map, DCAT table

def chart_data(spec: dict, columns: list[dict], rows: list[dict]) -> dict:
    """Aggregate data.csv's rows for the chart: ``spec['y']`` by ``spec['x']`` with ``spec['agg']``
    over the rows matching ``spec['where']``; blank y cells (suppressed) are counted, not summed."""
    titles = {c["name"]: c.get("title") or c["name"] for c in columns}
    groups: dict[str, list[float]] = {}
    blank = 0
    for r in rows:
        if any(str(r.get(c, "")) != str(v) for c, v in spec["where"].items()):
            continue
        x = r.get(spec["x"], "")
        if spec["agg"] == "count":
            groups.setdefault(x, []).append(1.0)
            continue
        y = r.get(spec["y"], "")
        if y in ("", None):
            blank += 1
            groups.setdefault(x, [])
            continue
        groups.setdefault(x, []).append(float(y))
    values = {}
    for x, ys in groups.items():
        if not ys:
            values[x] = None
        elif spec["agg"] in ("sum", "count"):
            values[x] = sum(ys)
        elif spec["agg"] == "mean":
            values[x] = sum(ys) / len(ys)
        else:
            values[x] = max(ys) if spec["agg"] == "max" else min(ys)
    values = {x: (None if v is None else (int(v) if float(v).is_integer() else round(v, 2))) for x, v in values.items()}
    if spec["type"] == "line":
        cats = sorted(values)
    else:
        cats = sorted(values, key=lambda x: (values[x] is None, -(values[x] or 0), x))
    y_title = "行数" if spec["agg"] == "count" else titles.get(spec["y"], spec["y"])
    cond = "，".join(f"{titles.get(c, c)}为{v}" for c, v in spec["where"].items())
    caption = f"按{titles.get(spec['x'], spec['x'])}的{y_title}（{AGG_LABELS[spec['agg']]}）" + (f"，仅{cond}的行" if cond else "")
    return {"type": spec["type"], "x": spec["x"], "y": spec["y"], "agg": spec["agg"], "x_title": titles.get(spec["x"], spec["x"]),
            "y_title": y_title, "categories": cats, "values": [values[c] for c in cats], "caption": caption, "blank": blank}


def dcat_rows(ttl: bytes, base: str) -> list[tuple[str, list[dict]]]:
    """The dataset's DCAT description (dcat.ttl) as labelled rows for a table; links are made
    relative to the dataset's page when they point into the site."""
    from rdflib import RDF, RDFS
    from rdflib.namespace import DCAT, DCTERMS, FOAF, SKOS

    from opendata.dcat import VCARD

    g = dcat.parse_turtle(ttl)
    ds = next(iter(g.subjects(RDF.type, DCAT.Dataset)), None)
    if ds is None:
        raise OpenDataError("dcat.ttl has no dcat:Dataset")

    def label(node) -> str:
        for p in (SKOS.prefLabel, FOAF.name, VCARD.fn, DCTERMS.title):
            zh = [o for o in g.objects(node, p) if getattr(o, "language", None) == "zh"]
            if zh:
                return str(zh[0])
        return str(node)

    def link(node, text=None) -> dict:
        href = str(node)
        if href.startswith(base):
            href = _relative(href[len(base):], str(ds)[len(base):])
        return {"text": text or str(node), "href": href}

    def texts(p) -> list[dict]:
        return [{"text": str(o)} for o in sorted(g.objects(ds, p))]

    rows = [("标识", texts(DCTERMS.identifier)), ("标题", texts(DCTERMS.title)), ("描述", texts(DCTERMS.description)),
            ("关键词", [{"text": "、".join(sorted(str(o) for o in g.objects(ds, DCAT.keyword)))}]),
            ("主题（EU 数据主题）", [link(o, f"{label(o)}（{str(o).rsplit('/', 1)[-1]}）") for o in sorted(g.objects(ds, DCAT.theme))]),
            ("发布者", [{"text": label(o)} for o in g.objects(ds, DCTERMS.publisher)])]
    for cp in g.objects(ds, DCAT.contactPoint):
        rows.append(("联系方式", [{"text": label(cp)}] + [link(e, str(e).removeprefix("mailto:")) for e in g.objects(cp, VCARD.hasEmail)]))
    for t in g.objects(ds, DCTERMS.temporal):
        rows.append(("时间范围", [{"text": f"{g.value(t, DCAT.startDate)} 至 {g.value(t, DCAT.endDate)}"}]))
    for s in g.objects(ds, DCTERMS.spatial):
        rows.append(("空间范围", [{"text": f"{label(s)}（{g.value(s, DCTERMS.identifier)}）"}, {"text": str(g.value(s, DCAT.bbox) or "")}]))
    for p, name in ((DCTERMS.accrualPeriodicity, "更新频率"), (DCTERMS.accessRights, "开放方式"), (DCTERMS.language, "语言")):
        rows.append((name, [link(o, label(o)) for o in g.objects(ds, p)]))
    rows.append(("更新日期", texts(DCTERMS.modified)))
    rows.append(("数据集页面", [link(o) for o in g.objects(ds, DCAT.landingPage)]))
    rows.append(("来源说明", [{"text": str(g.value(o, RDFS.label))} for o in g.objects(ds, DCTERMS.provenance)]))
    for dist in sorted(g.objects(ds, DCAT.distribution)):
        lic = g.value(dist, DCTERMS.license)
        url = g.value(dist, DCAT.downloadURL) or g.value(dist, DCAT.accessURL)
        name = str(g.value(dist, DCTERMS.description) or url).split("：", 1)[0]
        rows.append((f"分发：{name}", [
            link(url),
            {"text": f"格式 {label(g.value(dist, DCTERMS.format))}，媒体类型 {str(g.value(dist, DCAT.mediaType)).split('media-types/')[-1]}，"
                     f"{g.value(dist, DCAT.byteSize)} 字节"},
            {"text": f"许可：{label(lic)}" if lic is not None else "许可：—"}]))
    return [(name, vals) for name, vals in rows if vals and any(v["text"] for v in vals)]


def _relative(target: str, page: str) -> str:
    """``target`` (a path under the site) relative to the folder of ``page`` (both without the base)."""
    depth = page.split("#")[0].count("/")
    return "../" * depth + target if target else ("../" * depth or "./")


def _json_for_script(obj) -> str:
    """JSON safe inside <script type="application/json">."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


# ------------------------------------------------------------------------------------- build

def _datasets(settings: Settings) -> list[dict]:
    """Everything the pages show, per dataset folder of the open zone."""
    ids = dcat.dataset_folders(settings)
    if not ids:
        raise OpenDataError(f"no open datasets under {settings.path('open')}; run `lake publish` first")
    contracts = contracts_mod.load(settings.contracts_dir)
    by_id = {tc.open_dataset["id"]: tc for tc in contracts.tables.values() if tc.open_dataset.get("id")}
    base = dcat.base_url(settings)
    out = []
    for ds_id in ids:
        if ds_id in RESERVED:
            raise OpenDataError(f"open dataset id '{ds_id}' is reserved by the portal ({', '.join(sorted(RESERVED))})")
        tc = by_id.get(ds_id)
        if tc is None:
            raise OpenDataError(f"{settings.path('open', ds_id)} has no contract with open_dataset.id '{ds_id}'")
        meta, files = dcat.read_folder(settings, ds_id)
        folder = settings.path("open", ds_id)
        for name in ("dcat.ttl", "dcat.jsonld"):
            if not io.file_exists(f"{folder}/{name}"):
                raise OpenDataError(f"{folder}/{name} is missing; run `lake publish` to describe the open zone")
        model = dcat.describe(meta, files, tc)
        if "data.csv" not in files:
            raise OpenDataError(f"{folder}/data.csv is missing; the portal previews and charts it")
        rows = list(csv.DictReader(pyio.StringIO(files["data.csv"].decode("utf-8"))))
        col_names = [c["name"] for c in meta["columns"]]
        chart = chart_data(od_contract.chart(tc), meta["columns"], rows) if model.public else None
        ttl = io.read_bytes(f"{folder}/dcat.ttl")
        # every file of the folder is mirrored and offered for download (data files first)
        names = [path.rsplit("/", 1)[1] for path in io.list_files(folder)]
        if not model.public:  # directed opening: only the description is public, never the data
            names = [n for n in names if n in DESCRIPTION_FILES]
        all_files = {n: io.read_bytes(f"{folder}/{n}") for n in names}
        fmt = {d.file: d.format for d in model.distributions}
        fmt.update({"metadata.json": "JSON（元数据）", "dcat.ttl": "Turtle（DCAT-AP 3）", "dcat.jsonld": "JSON-LD（DCAT-AP 3）"})
        downloads = [{"name": n, "format": fmt.get(n, ""), "size": _size(len(b)), "sha256": hashlib.sha256(b).hexdigest()}
                     for n, b in all_files.items()]
        downloads.sort(key=lambda f: (f["name"] not in fmt or f["name"] in DESCRIPTION_FILES, f["name"]))
        geo = None
        if "data.geojson" in files and model.public:
            gj = json.loads(files["data.geojson"])
            label = chart["x"] if chart["x"] in col_names else next((c for c in col_names if c in ("name", "town")), "")
            label = label if label in col_names else ""
            geo = {"data": gj, "label": label,
                   "attribution": f"数据：{model.publisher_zh}（WGS-84）",
                   "caption": f"由 data.geojson 绘制（WGS-84，{len(gj.get('features', []))} 个要素；几何相同的行合并显示），无底图。"}
        freq = vocab.FREQUENCIES[model.frequency][2]
        out.append({
            "id": ds_id, "tc": tc, "meta": meta, "model": model, "all_files": all_files, "downloads": downloads,
            "rows": rows if model.public else [], "chart": chart, "geo": geo, "gate": gate_result(settings, meta.get("source_table", tc.table)),
            "dcat_rows": dcat_rows(ttl, base),
            "view": {
                "id": ds_id, "title": model.title, "description": model.description, "keywords": list(model.keywords),
                "themes": [vocab.THEMES[t][1] for t in model.themes], "modified": model.modified, "frequency": freq,
                "rows": len(rows), "formats": [d.format for d in model.distributions],
                "temporal": (model.temporal[0] if model.temporal and model.temporal[0] == model.temporal[1]
                             else f"{model.temporal[0]} 至 {model.temporal[1]}" if model.temporal else ""),
                "access": vocab.ACCESS_RIGHTS[model.access][2], "licence": vocab.LICENCES[model.licence]["zh"],
                "source_table": meta.get("source_table", tc.table), "public": model.public,
            },
        })
    return out


def build(settings: Settings, out_dir: str | Path) -> dict:
    """Write the static site into ``out_dir`` (created; replaced if an earlier build made it)."""
    vendor = vendor_files()
    datasets = _datasets(settings)
    out = Path(out_dir)
    try:
        return _write(settings, out, vendor, datasets)
    except OSError as e:
        raise OpenDataError(f"cannot write the portal to {out}: {e.strerror or e}") from None


def _write(settings: Settings, out: Path, vendor: dict[str, Path], datasets: list[dict]) -> dict:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    if out.exists():
        if not out.is_dir():
            raise OpenDataError(f"--out {out} is a file, not a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise OpenDataError(f"--out {out} is not empty and was not built by `lake portal build`; choose an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("built by `lake portal build`; the whole folder is replaced by the next build\n", encoding="utf-8")
    for site_path, src in sorted(vendor.items()):
        dst = out / site_path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, keep_trailing_newline=True)
    first = datasets[0]["model"]
    common = {"site_title": SITE_TITLE, "publisher": first.publisher_zh,
              "licence_zh": vocab.LICENCES[first.licence]["zh"]}
    for d in datasets:
        folder = out / d["id"]
        folder.mkdir()
        for name, data in d["all_files"].items():
            (folder / name).write_bytes(data)
        cols = [{"name": c["name"], "title": c.get("title", ""), "type": TYPE_LABELS.get(c.get("type"), c.get("type", ""))}
                for c in d["meta"]["columns"]]
        kinds = {c["name"]: c.get("type") for c in d["meta"]["columns"]}
        preview = [[_cell(r.get(c["name"], "") or "", kinds[c["name"]]) for c in cols] for r in d["rows"][:PREVIEW_ROWS]]
        html = env.get_template("dataset.html").render(
            **common, root="../", d=d["view"], downloads=d["downloads"], columns=cols, preview={"rows": preview},
            chart=d["chart"], chart_json=_json_for_script(d["chart"]) if d["chart"] else "", geo=d["geo"],
            geo_json=_json_for_script({k: d["geo"][k] for k in ("data", "label", "attribution")}) if d["geo"] else "",
            gate=d["gate"], dcat_rows=d["dcat_rows"])
        (folder / "index.html").write_text(html, encoding="utf-8")

    for name in ("catalog.ttl", "catalog.jsonld"):
        uri = settings.path("open", name)
        if not io.file_exists(uri):
            raise OpenDataError(f"{uri} is missing; run `lake publish` to describe the open zone")
        (out / name).write_bytes(io.read_bytes(uri))
    ckan_files = ["package_list.json"] + [f"package_show/{d['id']}.json" for d in datasets]
    for name in ckan_files:
        uri = settings.path("open", "ckan", name)
        if io.file_exists(uri):
            (out / "ckan" / name).parent.mkdir(parents=True, exist_ok=True)
            (out / "ckan" / name).write_bytes(io.read_bytes(uri))
    index = [{"id": d["id"], "title": d["view"]["title"], "description": d["view"]["description"],
              "keywords": " ".join(d["view"]["keywords"]),
              "columns": " ".join(f"{c['name']} {c.get('title', '')}" for c in d["meta"]["columns"])} for d in datasets]
    html = env.get_template("index.html").render(
        **common, root="", datasets=[d["view"] for d in datasets], search_index=_json_for_script(index),
        catalog_description=dcat.CATALOG_DESCRIPTION[0],
        catalog_sizes={n: _size((out / n).stat().st_size) for n in ("catalog.ttl", "catalog.jsonld")})
    (out / "index.html").write_text(html, encoding="utf-8")
    return {"index": str(out / "index.html"), "datasets": [d["id"] for d in datasets]}


# ------------------------------------------------------------------------------------- serve

class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".ttl": "text/turtle; charset=utf-8",
                      ".jsonld": "application/ld+json", ".geojson": "application/geo+json",
                      ".csv": "text/csv; charset=utf-8", ".json": "application/json", ".js": "text/javascript",
                      ".html": "text/html; charset=utf-8"}

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def server(directory: str | Path, port: int = 8000, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """An HTTP server for a built site (``serve_forever()`` to run it; port 0 picks a free port)."""
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise OpenDataError(f"{directory} has no index.html; run `lake portal build --out {directory}` first")
    handler = functools.partial(_Handler, directory=str(directory))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise OpenDataError(f"cannot listen on {host}:{port}: {e.strerror}") from None
