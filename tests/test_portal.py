"""The static open-data portal (opendata/portal.py, `lake portal build|serve`).

Unit tests on a small hand-built open zone (tests/opendata_sample.py): the site's files, vendored
libraries, charts against an independent aggregation, determinism, errors, the HTTP server. A
browser test (marker `browser`) drives Debian's headless Chromium with Playwright as a person would.
One integration test builds the portal from the tiny lake (gate results from quality/validations)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import opendata_sample
from lake.cli import app
from lake.settings import REPO
from opendata import portal
from opendata.contract import OpenDataError

runner = CliRunner()
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    root = tmp_path_factory.mktemp("portal_lake")
    settings, tables = opendata_sample.build(str(root))
    return {"settings": settings, "tables": tables, "open": Path(root, "open"), "root": str(root)}


@pytest.fixture(scope="module")
def site(zone, tmp_path_factory):
    out = tmp_path_factory.mktemp("portal_site") / "site"
    r = runner.invoke(app, ["portal", "build", "--out", str(out), "--root", zone["root"]])
    assert r.exit_code == 0, r.output
    assert "wrote the open-data portal (3 datasets)" in r.output
    return out


def _serve(directory):
    httpd = portal.server(directory, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def expected_chart(folder: Path, spec: dict) -> tuple[list, list]:
    """The chart's series computed with pandas from data.csv: the oracle for the portal's aggregation."""
    df = pd.read_csv(folder / "data.csv", dtype=str, keep_default_na=False)
    for col, value in spec.get("where", {}).items():
        df = df[df[col] == str(value)]
    agg = {"sum": "sum", "mean": "mean", "max": "max", "min": "min", "count": "size"}[spec.get("agg", "sum")]
    if agg == "size":  # rows per category
        grouped = df.groupby(spec["x"]).size()
    else:
        y = pd.to_numeric(df[spec["y"]].where(df[spec["y"]] != ""), errors="coerce")
        grouped = y.groupby(df[spec["x"]]).agg(agg, min_count=1) if agg == "sum" else y.groupby(df[spec["x"]]).agg(agg)
    values = {k: (None if pd.isna(v) else round(float(v), 2)) for k, v in grouped.items()}
    if spec.get("type") == "line":  # a line runs along its categories in order
        cats = sorted(values)
    else:
        cats = sorted(values, key=lambda k: (values[k] is None, -(values[k] or 0), k))
    return cats, [values[c] for c in cats]


def search_oracle(zone, query: str) -> set[str]:
    """Datasets whose title, description, keywords or column names/titles contain ``query``."""
    out = set()
    for d in zone["open"].glob("*/metadata.json"):
        m = json.loads(d.read_text(encoding="utf-8"))
        text = " ".join([m["title"], m["description"], *m["keywords"], *[f"{c['name']} {c['title']}" for c in m["columns"]]])
        if query.lower() in text.lower():
            out.add(m["identifier"])
    return out


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.loaded, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.loaded.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.loaded.append(a["href"])
        elif tag == "img" and a.get("src"):
            self.loaded.append(a["src"])
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


# ---------------------------------------------------------------------------------------- the built site

def test_site_mirrors_the_open_zone(zone, site):
    assert (site / "index.html").is_file()
    for folder in sorted(p for p in zone["open"].iterdir() if p.is_dir() and p.name != "ckan"):
        page = site / folder.name / "index.html"
        assert page.is_file(), page
        for f in folder.iterdir():
            assert (site / folder.name / f.name).read_bytes() == f.read_bytes(), f
    for f in ("catalog.ttl", "catalog.jsonld", "ckan/package_list.json", "ckan/package_show/daxing-flood-points.json"):
        assert (site / f).read_bytes() == (zone["open"] / f).read_bytes()


def test_pages_load_only_files_of_the_site(site):
    """Nothing is fetched from a CDN: every script, stylesheet and image a page loads is a relative
    path to a file inside the site; every relative link resolves too."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 4
    for page in pages:
        refs = _Refs()
        refs.feed(page.read_text(encoding="utf-8"))
        assert refs.loaded, page
        for ref in refs.loaded + [h for h in refs.links if not re.match(r"^[a-z]+:", h)]:
            if ref.startswith("data:"):
                continue
            assert not re.match(r"^(https?:)?//", ref), f"{page}: {ref} is not part of the site"
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.exists() and str(target).startswith(str(site.resolve())), f"{page}: {ref} does not exist"
    css = (site / "assets" / "vendor" / "leaflet" / "leaflet.css").read_text(encoding="utf-8")
    for url in re.findall(r"url\(([^)]+)\)", css):
        url = url.strip("'\"")
        assert url.startswith(("data:", "#")) or (site / "assets/vendor/leaflet" / url).is_file(), url


def test_vendored_libraries_are_the_locked_npm_packages(site):
    lock = json.loads((REPO / "opendata/web/package-lock.json").read_text(encoding="utf-8"))["packages"]
    pinned = json.loads((REPO / "opendata/web/package.json").read_text(encoding="utf-8"))["dependencies"]
    for pkg, files in portal.VENDOR.items():
        assert lock[f"node_modules/{pkg}"]["version"] == pinned[pkg]
        installed = json.loads((portal.NODE_MODULES / pkg / "package.json").read_text(encoding="utf-8"))
        assert installed["version"] == pinned[pkg]
        for src, dst in files:
            assert (site / "assets/vendor" / dst).read_bytes() == (portal.NODE_MODULES / pkg / src).read_bytes()


def test_pages_are_chinese_and_show_every_part(zone, site):
    home = (site / "index.html").read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in home and 'name="viewport"' in home
    for tc in zone["tables"]:
        ds_id = tc.open_dataset["id"]
        html = (site / ds_id / "index.html").read_text(encoding="utf-8")
        meta = json.loads((zone["open"] / ds_id / "metadata.json").read_text(encoding="utf-8"))
        assert meta["title"] in home and f'href="{ds_id}/index.html"' in home
        for part in ("downloads", "chart-section", "columns", "preview", "gate", "metadata"):
            assert f'id="{part}"' in html, (ds_id, part)
        assert ('id="map-section"' in html) == ("data.geojson" in [d["file"] for d in meta["distributions"]])
        for c in meta["columns"]:
            assert f"<code>{c['name']}</code>" in html and c["title"] in html
        for d in meta["distributions"]:
            assert f'<a href="{d["file"]}" download="{d["file"]}">' in html
        assert 'href="dcat.ttl"' in html and 'href="dcat.jsonld"' in html
        assert "没有找到来源表" in html  # the hand-built zone has no Delta tables: no gate record, said so
        assert f'<strong id="modified">{opendata_sample.AS_OF}</strong>' in html


def test_chart_series_equal_an_independent_aggregation(zone, site):
    from opendata import contract as od_contract

    for tc in zone["tables"]:
        ds_id = tc.open_dataset["id"]
        html = (site / ds_id / "index.html").read_text(encoding="utf-8")
        data = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html, re.S).group(1))
        cats, values = expected_chart(zone["open"] / ds_id, od_contract.chart(tc))
        assert data["categories"] == cats and data["values"] == values, ds_id
    pop = json.loads(re.search(r'id="chart-data">(.*?)</script>',
                               (site / "daxing-population-by-town-age-band/index.html").read_text(encoding="utf-8")).group(1))
    assert pop["blank"] == 2  # 旧宫镇 0-17 女 (3) and 西红门镇 60-79 男 (1) are suppressed, not summed


def test_building_again_gives_the_same_bytes(zone, site, tmp_path):
    again = tmp_path / "again"
    portal.build(zone["settings"], again)
    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (site / f).read_bytes() == (again / f).read_bytes(), f


def test_a_directed_dataset_shows_its_description_but_no_data(tmp_path):
    contracts = tmp_path / "contracts"
    shutil.copytree(REPO / "contracts", contracts)
    yaml_path = contracts / "tables" / "topic_flood_points.yaml"
    text = yaml_path.read_text(encoding="utf-8")
    assert "open_type: unconditional" in text
    yaml_path.write_text(text.replace("open_type: unconditional", "open_type: directed"), encoding="utf-8")
    settings, _ = opendata_sample.build(str(tmp_path / "lake"), contracts_dir=str(contracts))
    out = tmp_path / "site"
    portal.build(settings, out)
    folder = out / "daxing-flood-points"
    assert sorted(p.name for p in folder.iterdir()) == ["dcat.jsonld", "dcat.ttl", "index.html", "metadata.json"]
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert 'id="directed"' in html and "有条件（定向）开放" in html
    for absent in ('id="chart-section"', 'id="map-section"', 'id="preview"', 'href="data.csv"', 'href="data.geojson"', "兴华大街积水点"):
        assert absent not in html, absent
    assert (out / "daxing-population-by-town-age-band" / "data.csv").is_file()  # the others stay open


# ---------------------------------------------------------------------------------------- errors

def test_build_refuses_a_folder_it_did_not_make(zone, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me", encoding="utf-8")
    r = runner.invoke(app, ["portal", "build", "--out", str(tmp_path), "--root", zone["root"]])
    assert r.exit_code == 1 and "is not empty and was not built by `lake portal build`" in r.output
    assert "Traceback" not in r.output and (tmp_path / "mine.txt").read_text(encoding="utf-8") == "keep me"


def test_build_without_an_open_zone_says_to_publish(tmp_path):
    r = runner.invoke(app, ["portal", "build", "--out", str(tmp_path / "site"), "--root", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "no open datasets under" in r.output and "run `lake publish` first" in r.output
    assert "Traceback" not in r.output


def test_missing_npm_packages_are_one_line_errors(monkeypatch, tmp_path):
    monkeypatch.setattr(portal, "NODE_MODULES", tmp_path / "node_modules")
    monkeypatch.setattr(portal.shutil, "which", lambda name: None)
    with pytest.raises(OpenDataError, match=r"^npm is not installed: .*install Node.js with npm, then run ./setup.sh$"):
        portal.vendor_files()
    monkeypatch.setattr(portal.shutil, "which", lambda name: "/usr/bin/npm")
    with pytest.raises(OpenDataError, match=r"run ./setup.sh \(npm ci\)$"):
        portal.vendor_files()
    shutil.copytree(REPO / "opendata/web/node_modules", tmp_path / "node_modules")
    (tmp_path / "node_modules/leaflet/package.json").write_text('{"version": "1.9.3"}', encoding="utf-8")
    with pytest.raises(OpenDataError, match="npm package leaflet is 1.9.3 .* package.json pins 1.9.4"):
        portal.vendor_files()


def test_serve_needs_a_built_site(tmp_path):
    r = runner.invoke(app, ["portal", "serve", "--dir", str(tmp_path), "--port", "0"])
    assert r.exit_code == 1 and "has no index.html; run `lake portal build --out" in r.output


# ---------------------------------------------------------------------------------------- serving

def test_server_serves_the_site(zone, site):
    httpd, base = _serve(site)
    try:
        with urllib.request.urlopen(base) as r:
            assert r.status == 200 and "北京市大兴区公共数据开放平台" in r.read().decode("utf-8")
        with urllib.request.urlopen(base + "daxing-flood-points/data.csv") as r:
            assert r.headers["Content-Type"].startswith("text/csv")
            assert r.read() == (zone["open"] / "daxing-flood-points/data.csv").read_bytes()
        with urllib.request.urlopen(base + "daxing-flood-points/dcat.ttl") as r:
            assert r.headers["Content-Type"].startswith("text/turtle")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert httpd.server_address[0] == "127.0.0.1"


@pytest.mark.parametrize("built", [True, False], ids=["--dir", "builds-first"])
def test_lake_portal_serve_command(zone, site, built):
    """`lake portal serve` as a user runs it: a process serving the site until it is stopped; without
    --dir it builds the site into a temporary folder first and removes it when stopped."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--dir", str(site)] if built else ["--root", zone["root"]]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "lake"), "portal", "serve", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        body = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=1) as r:
                    body = r.read().decode("utf-8")
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None and "daxing-flood-points/index.html" in body
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode("utf-8")
    served = re.search(r"serving (\S+) at http://127.0.0.1:(\d+)/ \(Ctrl-C to stop\)", out)
    assert served and served.group(2) == str(port) and "stopped" in out and proc.returncode == 0, out
    if built:
        assert served.group(1) == str(site)
    else:
        assert served.group(1).endswith("/site") and not Path(served.group(1)).parent.exists()


# ---------------------------------------------------------------------------------------- a real browser

@pytest.mark.browser
def test_portal_in_headless_chromium(zone, site, tmp_path):
    """Open the home page, search, open a dataset, see its chart and map drawn, download a file, with
    no console error and no request leaving the site; screenshots of the home page and a dataset page."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (.ci/run installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    from opendata import contract as od_contract

    httpd, base = _serve(site)
    errors, outside = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}, locale="zh-CN")

            def watch(page):
                page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
                page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((base, "data:")) else None)
                return page

            page = watch(context.new_page())
            page.goto(base + "index.html")
            ids = sorted(p.name for p in zone["open"].iterdir() if p.is_dir() and p.name != "ckan")
            assert sorted(page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.id)")) == ids
            page.screenshot(path=str(tmp_path / "home.png"), full_page=True)

            def visible():
                return set(page.locator(".card:not([hidden])").evaluate_all("cs => cs.map(c => c.dataset.id)"))

            for query in ("积水", "town_code", "在线设备数", "镇街", "人口"):
                page.fill("#q", query)
                assert visible() == search_oracle(zone, query), query
                assert page.inner_text("#search-status") == f"找到 {len(visible())} 个数据集"
            assert visible() and len(search_oracle(zone, "town_code")) == 2
            page.fill("#q", "没有这样的数据")
            assert visible() == set() and page.is_visible("#no-results")

            # open a dataset from a search result
            page.fill("#q", "积水")
            page.click(".card:not([hidden]) h2 a")
            page.wait_for_url(base + "daxing-flood-points/index.html")
            folder = zone["open"] / "daxing-flood-points"
            flood = next(t for t in zone["tables"] if t.open_dataset["id"] == "daxing-flood-points")
            page.wait_for_selector("#chart[data-rendered='true']")
            option = page.evaluate("() => { const o = echarts.getInstanceByDom(document.getElementById('chart')).getOption();"
                                   " return {cats: o.xAxis[0].data, vals: o.series[0].data}; }")
            cats, values = expected_chart(folder, od_contract.chart(flood))
            assert option == {"cats": cats, "vals": values}
            assert page.locator("#chart svg path").count() >= len(cats)
            box = page.locator("#chart svg").bounding_box()
            assert box["width"] > 300 and box["height"] > 200
            geo = json.loads((folder / "data.geojson").read_text(encoding="utf-8"))
            shapes = {json.dumps(f["geometry"], sort_keys=True) for f in geo["features"] if f["geometry"]}
            page.wait_for_selector("#map[data-rendered='true']")
            assert page.locator("#map path.leaflet-interactive").count() == len(shapes) == 2
            assert page.locator("#map .leaflet-tile").count() == 0  # no tile server
            with page.expect_download() as dl:
                page.click('a[download="data.csv"]')
            assert Path(dl.value.path()).read_bytes() == (folder / "data.csv").read_bytes()
            assert dl.value.suggested_filename == "data.csv"
            page.screenshot(path=str(tmp_path / "dataset.png"), full_page=True)

            # polygons: eight rows (four towns x two device types) drawn as four town shapes
            page.goto(base + "daxing-sensor-coverage-by-town/index.html")
            page.wait_for_selector("#map[data-rendered='true']")
            geo = json.loads((zone["open"] / "daxing-sensor-coverage-by-town/data.geojson").read_text(encoding="utf-8"))
            shapes = {json.dumps(f["geometry"], sort_keys=True) for f in geo["features"]}
            assert len(geo["features"]) == 8 and page.locator("#map path.leaflet-interactive").count() == len(shapes) == 4
            assert page.locator("#gate-status").inner_text().startswith("没有找到来源表")

            # readable on a phone: nothing wider than the screen, tables scroll inside their boxes
            phone = watch(browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                              has_touch=True, locale="zh-CN").new_page())
            for url in ("index.html", "daxing-flood-points/index.html", "daxing-population-by-town-age-band/index.html"):
                phone.goto(base + url)
                assert phone.evaluate("() => document.documentElement.scrollWidth") <= 390, url
            phone.screenshot(path=str(tmp_path / "dataset-phone.png"), full_page=True)
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert errors == []
    assert outside == []
    for name in ("home.png", "dataset.png", "dataset-phone.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name


# ---------------------------------------------------------------------------------------- the tiny lake

def test_tiny_lake_open_zone_is_described_and_the_portal_shows_its_gates(tiny_lake, spark, tmp_path):
    """End to end: publish_open wrote DCAT for every open dataset (conforming to DCAT-AP 3), publishing
    again changes no byte, and the portal built from the lake shows each source table's last gate
    (the rows Spark reads from quality/validations for the run named by the table's last commit)."""
    from jobs.publish import open as publish
    from lake import contracts as contracts_mod
    from lake import io
    from opendata import dcat

    s = tiny_lake["settings"]
    open_dir = Path(s.root, "open")
    opened = [tc for tc in contracts_mod.load(s.contracts_dir).tables.values() if tc.open_type != "none" and tc.open_dataset]
    ids = sorted(tc.open_dataset["id"] for tc in opened)
    assert sorted(p.parent.name for p in open_dir.glob("*/dcat.ttl")) == ids
    shapes = dcat.shapes_graph()
    for f in [open_dir / "catalog.ttl", *sorted(open_dir.glob("*/dcat.ttl"))]:
        g = dcat.parse_turtle(f.read_bytes())
        assert [r for r in dcat.validate(g, shapes) if r["severity"] == "Violation"] == [], f
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(open_dir.rglob("*")) if p.is_file()}
    publish.publish_open(spark, s)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(open_dir.rglob("*")) if p.is_file()}
    assert after == before

    out = tmp_path / "site"
    portal.build(s, out)
    for tc in opened:
        html = (out / tc.open_dataset["id"] / "index.html").read_text(encoding="utf-8")
        run_id = io.last_metadata(spark, io.table_path(s, tc.zone, tc.name))["gate_run_id"]
        rows = (io.read(spark, s.path("quality", "validations"))
                .where(f"run_id = '{run_id}' AND `table` = '{tc.table}'").collect())
        assert rows and all(r["success"] for r in rows)
        assert f"<code>{run_id}</code>" in html, tc.table
        assert re.search(rf'id="gate-status" class="gate passed">\s*通过：来源表 <code>{re.escape(tc.table)}</code>', html)
        assert f"{len(rows)} 项检查全部通过" in html, tc.table
        assert html.count("<td>通过</td>") == len(rows)
        if tc.open_type == "directed":  # the description only: no chart, map, preview or data file
            assert 'id="directed"' in html and 'id="chart-data"' not in html and 'href="data.csv"' not in html
            assert not (out / tc.open_dataset["id"] / "data.csv").exists()
            continue
        data = json.loads(re.search(r'id="chart-data">(.*?)</script>', html, re.S).group(1))
        from opendata import contract as od_contract

        cats, values = expected_chart(open_dir / tc.open_dataset["id"], od_contract.chart(tc))
        assert (data["categories"], data["values"]) == (cats, values) and cats, tc.table
        assert ('id="map-section"' in html) == bool(tc.open_dataset.get("geojson"))
