"""Directed opening (opendata/access.py) and the sandbox (opendata/sandbox.py), without a JVM: a small
open zone written by hand, a base.population Delta table written with deltalake, the CLI through
typer's runner. Every application, download and query, granted or refused, is in the audit."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from datetime import timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from lake import contracts as contracts_mod
from lake.cli import app
from lake.settings import REPO, Settings
from opendata import access, sandbox

runner = CliRunner()
DATASET = "daxing-vital-events-deidentified"
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture()
def lake(tmp_path):
    """A lake root with the directed dataset's files and a base.population table (deltalake)."""
    from deltalake import write_deltalake

    s = Settings(root=str(tmp_path / "lake"), contracts_dir=str(REPO / "contracts"))
    folder = Path(s.path("open", DATASET))
    folder.mkdir(parents=True)
    (folder / "data.csv").write_text("record_id,event_type\nabc,出生\ndef,死亡\n", encoding="utf-8")
    (folder / "metadata.json").write_text(json.dumps({"identifier": DATASET, "columns": [{"name": "record_id"}, {"name": "event_type"}],
                                                      "distributions": [{"format": "CSV", "file": "data.csv"}]}), encoding="utf-8")
    (folder / "dcat.ttl").write_text("# dcat\n", encoding="utf-8")
    tc = contracts_mod.load(s.contracts_dir).table("base.population")
    rng = random.Random(1)
    rows = [{"person_id": f"P{i:04d}", "id_number": f"ID{i}", "name": "张伟", "gender": rng.choice("男女"),
             "birth_date": dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(25000)), "ethnicity": "汉",
             "phone": "13800000000", "town": rng.choice(["黄村镇", "旧宫镇", "西红门镇"]), "address": "地址",
             "register_status": "正常", "death_date": None, "marital_status": rng.choice(["已婚", "未婚"]),
             "subsistence_allowance": rng.choice(["是", "否", "否", "否"]), "employment_status": None, "insurance_types": None}
            for i in range(400)]
    schema = pa.schema([(c.name, pa.date32() if c.type == "date" else pa.string()) for c in tc.columns])
    write_deltalake(s.path("base", "population"), pa.Table.from_pandas(pd.DataFrame(rows), schema=schema, preserve_index=False))
    return s


def audit(s, **kw):
    return access.audit_records(s, **kw)


# ----------------------------------------------------------------------------------- directed opening

def test_apply_approve_download_then_expire_and_revoke(lake, tmp_path):
    a = access.apply(lake, "北京大学公共卫生学院", DATASET, "出生死亡季节性研究", True, now=NOW)
    assert a["kind"] == "download" and a["agreement_sha256"] == access.agreement_sha256(
        contracts_mod.load(lake.contracts_dir).table("topic.vital_events").open_dataset["agreement"])
    with pytest.raises(access.AccessError, match="no application 'Anope'"):
        access.approve(lake, "Anope", "数据局", 7, now=NOW)
    r = access.approve(lake, a["request_id"], "数据局审批人", 7, now=NOW)
    token = r["token"]
    # only the hash of the token is stored, anywhere under the private area
    stored = b"".join(p.read_bytes() for p in Path(lake.root, "_private").rglob("*") if p.is_file())
    assert token.encode() not in stored and hashlib.sha256(token.encode()).hexdigest().encode() in stored
    with pytest.raises(access.AccessError, match="is approved, not pending"):
        access.approve(lake, a["request_id"], "数据局审批人", 7, now=NOW)

    got = access.download(lake, token, tmp_path / "out", now=NOW + timedelta(days=1))
    assert got["files"] == ["data.csv", "metadata.json", "dcat.ttl"] and got["rows"] == 2
    assert (tmp_path / "out" / "data.csv").read_text(encoding="utf-8").startswith("record_id,event_type")

    with pytest.raises(access.AccessError, match=r"download refused: token T\w+ expired on 2026-11-09"):
        access.download(lake, token, tmp_path / "late", now=NOW + timedelta(days=8))
    with pytest.raises(access.AccessError, match="download refused: unknown token"):
        access.download(lake, "guessed-token", tmp_path / "x", now=NOW + timedelta(days=1, hours=1))
    access.revoke(lake, r["token_id"], "数据局", "协议违约", now=NOW + timedelta(days=2))
    with pytest.raises(access.AccessError, match=r"token T\w+ was revoked"):
        access.download(lake, token, tmp_path / "y", now=NOW + timedelta(days=2, hours=1))
    assert not (tmp_path / "late").exists() and not (tmp_path / "y").exists()

    downloads = audit(lake, action="download")
    assert [(d["decision"], d["applicant"], d["resource"]) for d in downloads] == [
        ("granted", "北京大学公共卫生学院", DATASET), ("refused", "", ""),
        ("refused", "北京大学公共卫生学院", DATASET), ("refused", "北京大学公共卫生学院", DATASET)]
    first = downloads[0]
    assert first["rows"] == 2 and first["columns"] == ["record_id", "event_type"] and first["purpose"] == "出生死亡季节性研究"
    assert first["token_id"] == r["token_id"] and len(first["result_sha256"]) == 64
    assert "revoked" in downloads[2]["reason"] and "expired" in downloads[3]["reason"]
    assert all(token not in json.dumps(x, default=str) for x in audit(lake))


def test_revoking_the_application_ends_its_tokens_and_states_are_tracked(lake, tmp_path):
    a = access.apply(lake, "某研究所", DATASET, "死亡地点研究", True, now=NOW)
    r = access.approve(lake, a["request_id"], "数据局", 30, now=NOW)
    access.revoke(lake, a["request_id"], "数据局", "目的已达成", now=NOW + timedelta(days=1))
    with pytest.raises(access.AccessError, match=f"application {a['request_id']} is revoked"):
        access.download(lake, r["token"], tmp_path / "o", now=NOW + timedelta(days=2))
    b = access.apply(lake, "另一机构", DATASET, "同一数据集的另一申请", True, now=NOW)
    access.reject(lake, b["request_id"], "数据局", "目的不明确", now=NOW)
    c = access.apply(lake, "第三机构", DATASET, "到期测试用的申请", True, now=NOW)
    access.approve(lake, c["request_id"], "数据局", 1, now=NOW)
    states = {x["request_id"]: x["state"] for x in access.applications(lake, now=NOW + timedelta(days=3))}
    assert states == {a["request_id"]: "revoked", b["request_id"]: "rejected", c["request_id"]: "expired"}


@pytest.mark.parametrize("resource, kwargs, message", [
    (DATASET, {"accept_agreement": False}, "data-use agreement of 'daxing-vital-events-deidentified' must be accepted"),
    (DATASET, {"purpose": "x"}, "states its purpose"),
    ("daxing-population-by-town-age-band", {}, "is open to everyone (open_type unconditional)"),
    ("no-such-dataset", {}, "is not an open dataset; datasets under directed opening: daxing-vital-events-deidentified"),
    ("sandbox:base.legal_entity", {}, "is not in the sandbox; sandbox tables: sandbox:base.population"),
    ("sandbox:base.population", {"columns": ["name"]}, "column(s) ['name'] of base.population are not available"),
    (DATASET, {"columns": ["record_id"]}, "columns are chosen for sandbox applications"),
])
def test_bad_applications_are_refused_with_a_reason(lake, resource, kwargs, message):
    args = {"purpose": "一个正当的研究目的", "accept_agreement": True, **kwargs}
    with pytest.raises(access.AccessError) as e:
        access.apply(lake, "申请人", resource, args["purpose"], args["accept_agreement"], args.get("columns"), now=NOW)
    assert message in str(e.value)
    if "open to everyone" not in message and "not an open dataset" not in message and "not in the sandbox" not in message:
        assert audit(lake, action="apply")[-1]["decision"] == "refused"


def test_cli_flow_prints_the_token_once_and_refusals_exit_1(lake, tmp_path):
    root = ["--root", lake.root]
    r = runner.invoke(app, ["open", "apply", "--as", "研究者", "--resource", DATASET, "--purpose", "课题研究用途"] + root)
    assert r.exit_code == 1 and "must be accepted (--accept-agreement)" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["open", "apply", "--as", "研究者", "--resource", DATASET, "--purpose", "课题研究用途",
                            "--accept-agreement"] + root)
    assert r.exit_code == 0, r.output
    rid = r.output.split("application ")[1].split()[0]
    r = runner.invoke(app, ["open", "approve", rid, "--by", "数据局", "--days", "5"] + root)
    assert r.exit_code == 0, r.output
    token = r.output.split("give it to the applicant): ")[1].split()[0]
    r = runner.invoke(app, ["open", "download", "--token", token, "--out", str(tmp_path / "d")] + root)
    assert r.exit_code == 0 and (tmp_path / "d" / "data.csv").is_file(), r.output
    r = runner.invoke(app, ["open", "download", "--token", token + "x", "--out", str(tmp_path / "e")] + root)
    assert r.exit_code == 1 and "download refused: unknown token" in r.output
    r = runner.invoke(app, ["open", "audit", "--json"] + root)
    rows = json.loads(r.output)
    assert [x["action"] for x in rows] == ["apply", "apply", "approve", "download", "download"]
    assert token not in r.output
    r = runner.invoke(app, ["open", "applications", "--json"] + root)
    assert [(x["request_id"], x["state"]) for x in json.loads(r.output)] == [(rid, "approved")]


# ----------------------------------------------------------------------------------- the sandbox

TOKENS: dict[str, str] = {}  # applicant -> the sandbox token its approval issued


@pytest.fixture()
def granted(lake):
    a = access.apply(lake, "大学", "sandbox:base.population", "低保分布研究", True)
    TOKENS["大学"] = access.approve(lake, a["request_id"], "数据局", 30)["token"]
    return lake


def test_an_aggregate_query_passes_and_is_audited(granted):
    r = sandbox.query(granted, "大学", "SELECT town, count(*) AS n, count(marital_status) AS m FROM base.population "
                                          "WHERE year(birth_date) < 2030 GROUP BY town ORDER BY town", TOKENS["大学"])
    assert r.columns == ["town", "n", "m"]
    from deltalake import DeltaTable
    df = DeltaTable(granted.path("base", "population")).to_pandas()
    expected = df.groupby("town").size().sort_index()
    assert [(t, n) for t, n, _ in r.rows] == list(expected.items())
    last = audit(granted, action="sandbox_query")[-1]
    assert last["decision"] == "granted" and last["rows"] == 3 and last["resource"] == "base.population"
    assert last["columns"] == ["birth_date", "marital_status", "town"] and last["purpose"] == "低保分布研究"
    assert last["result_sha256"] == hashlib.sha256(r.csv().encode()).hexdigest() and "GROUP BY town" in last["request"]


@pytest.mark.parametrize("sql, reason", [
    ("SELECT * FROM base.population", "row-level output"),
    ("SELECT person_id, town FROM base.population", "neither grouped nor aggregated"),
    ("SELECT town FROM base.population GROUP BY town", "no aggregate in the output"),
    ("SELECT max(birth_date) FROM base.population", "aggregate max() returns a single record's value"),
    ("SELECT town, median(year(birth_date)) FROM base.population GROUP BY town", "aggregate median()"),
    ("SELECT town, sum(CASE WHEN gender = '男' THEN 1 END) FROM base.population GROUP BY town", "takes one plain column"),
    ("SELECT town, count(*) FILTER (WHERE gender = '男') FROM base.population GROUP BY town", "FILTER (...) is not allowed"),
    ("SELECT count(*) FROM base.population WHERE person_id = 'P0001'", "1 of 1 result row(s) stand for fewer than 10 records"),
    ("SELECT birth_date, count(*) FROM base.population GROUP BY birth_date", "stand for fewer than 10 records"),
    ("SELECT town, count(death_date) FROM base.population WHERE person_id < 'P0005' GROUP BY town", "fewer than 10"),
    ("SELECT name, count(*) FROM base.population GROUP BY name", "personal columns never enter the sandbox"),
    ("SELECT count(*) FROM base.population WHERE id_number = 'ID1'", "personal columns never enter the sandbox"),
    ("SELECT count(*) FROM read_csv('/etc/passwd')", "table functions are not allowed"),
    ("SELECT count(*) FROM base.population a JOIN base.population b USING (person_id)", "joins are not allowed"),
    ("SELECT count(*) FROM (SELECT * FROM base.population)", "subqueries are not allowed"),
    ("WITH x AS (SELECT * FROM base.population) SELECT count(*) FROM x", "WITH (common table expressions)"),
    ("SELECT town, count(*) FROM base.population GROUP BY ALL", "GROUP BY ALL is not allowed"),
    ("SELECT count(*) FROM base.population WHERE town IN (SELECT town FROM base.population)", "subquery expressions"),
    ("SELECT count(*) OVER () FROM base.population", "window"),
    ("SELECT town, count(*) FROM base.population GROUP BY town HAVING max(birth_date) > '2000-01-01'", "aggregate max()"),
    ("DELETE FROM base.population", "only SELECT queries"),
    ("SELECT 1; SELECT 2", "one SELECT statement at a time"),
    ("SELECT count(*) FROM base.legal_entity", "base.legal_entity is not a sandbox table"),
    ("SELECT count(*) FROM base.population UNION SELECT count(*) FROM base.population", "no UNION"),
    ("SELEC count(*)", "cannot be read"),
    ("SELECT count(nosuch) FROM base.population", "not in the approved application"),
])
def test_refusals_say_why_and_are_audited(granted, sql, reason):
    with pytest.raises(sandbox.Refused) as e:
        sandbox.query(granted, "大学", sql, TOKENS["大学"])
    assert reason in str(e.value)
    last = audit(granted, action="sandbox_query")[-1]
    assert last["decision"] == "refused" and last["request"] == sql and reason in last["reason"] and last["rows"] is None


def test_no_grant_no_query_and_column_limited_grants(lake):
    with pytest.raises(access.AccessError, match="holds no approved sandbox application for base.population"):
        sandbox.query(lake, "路人", "SELECT town, count(*) FROM base.population GROUP BY town", None)
    a = access.apply(lake, "统计所", "sandbox:base.population", "按镇街统计", True, columns=["town"])
    with pytest.raises(access.AccessError, match="your application is pending"):
        sandbox.query(lake, "统计所", "SELECT town, count(*) FROM base.population GROUP BY town", None)
    tok = access.approve(lake, a["request_id"], "数据局", 30)["token"]
    assert len(sandbox.query(lake, "统计所", "SELECT town, count(*) FROM base.population GROUP BY town", tok).rows) == 3
    with pytest.raises(sandbox.Refused, match=r"\['gender'\] of base.population: not in the approved application"):
        sandbox.query(lake, "统计所", "SELECT gender, count(*) FROM base.population GROUP BY gender", tok)


def test_a_sandbox_query_needs_the_approvals_token(lake):
    """The applicant's name proves nothing: no token, another applicant's token, a revoked or expired
    token are refused (and audited); a sandbox token is no download token."""
    a = access.apply(lake, "统计所", "sandbox:base.population", "按镇街统计", True, columns=["town"], now=NOW)
    tok = access.approve(lake, a["request_id"], "数据局", 1, now=NOW)
    b = access.apply(lake, "大学", "sandbox:base.population", "人口结构研究", True, now=NOW)
    other = access.approve(lake, b["request_id"], "数据局", 30, now=NOW)["token"]
    sql = "SELECT town, count(*) FROM base.population GROUP BY town"
    for given, why in ((None, "none was given"), ("", "none was given"), ("forged", "not one issued to 统计所"),
                       (other, "not one issued to 统计所")):
        with pytest.raises(access.AccessError, match=why):
            sandbox.query(lake, "统计所", sql, given, now=NOW)
    assert len(sandbox.query(lake, "统计所", sql, tok["token"], now=NOW).rows) == 3
    assert [r["token_id"] for r in audit(lake, action="sandbox_query") if r["decision"] == "granted"] == [tok["token_id"]]
    with pytest.raises(access.AccessError, match="expired|not approved|is expired"):
        sandbox.query(lake, "统计所", sql, tok["token"], now=NOW + timedelta(days=2))
    with pytest.raises(access.AccessError, match="for the sandbox of base.population, not a download"):
        access.download(lake, tok["token"], lake.root + "/dl", now=NOW)
    access.revoke(lake, tok["token_id"], "数据局", "泄露", now=NOW)
    with pytest.raises(access.AccessError, match="was revoked"):
        sandbox.query(lake, "统计所", sql, tok["token"], now=NOW)
    refused = [r for r in audit(lake, action="sandbox_query") if r["decision"] == "refused"]
    assert len(refused) >= 6


def test_the_sandbox_cannot_write_or_reach_files(granted, tmp_path):
    before = sorted(p.stat().st_mtime_ns for p in Path(granted.path("base", "population")).rglob("*") if p.is_file())
    con = sandbox._load(granted, "base.population", ["town"])
    try:
        with pytest.raises(Exception, match="disabled|Permission"):
            con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
        with pytest.raises(Exception, match="lock|locked|configuration"):
            con.execute("SET enable_external_access = true")
        assert con.execute("SELECT count(*) FROM base.population").fetchone()[0] == 400
        with pytest.raises(Exception):
            con.execute("SELECT name FROM base.population")  # never loaded
    finally:
        con.close()
    assert not (tmp_path / "x.csv").exists()
    after = sorted(p.stat().st_mtime_ns for p in Path(granted.path("base", "population")).rglob("*") if p.is_file())
    assert after == before


def test_cli_sandbox_query_prints_the_result_or_the_refusal(granted):
    ok = runner.invoke(app, ["sandbox", "query", "--as", "大学", "--token", TOKENS["大学"], "--csv", "--root", granted.root,
                             "SELECT gender, count(*) AS n FROM base.population GROUP BY gender ORDER BY gender"])
    assert ok.exit_code == 0, ok.output
    lines = ok.output.strip().splitlines()
    assert lines[0] == "gender,n" and len(lines) == 3 and sum(int(x.split(",")[1]) for x in lines[1:]) == 400
    bad = runner.invoke(app, ["sandbox", "query", "--as", "大学", "--token", TOKENS["大学"], "--root", granted.root,
                              "SELECT person_id, count(*) FROM base.population GROUP BY person_id"])
    assert bad.exit_code == 1 and "stand for fewer than 10 records" in bad.output and "Traceback" not in bad.output
