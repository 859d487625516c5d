"""Sharing without a JVM: the contract keys it adds (strict), duty -> data, masking functions, view plans,
tokens, requests and grants, the catalogue chain and its tamper detection, stable resource codes, the
append-only audit, predicate hints against a grant, and the supply/demand metrics."""
from __future__ import annotations

import glob
import json
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from catalog import chain as chain_mod
from catalog import resources
from lake import contracts as contracts_mod
from lake.contracts import ContractError
from lake.settings import Settings
from sharing import access, audit, grants, masks, metrics, store, tokens
from sharing import policy as policy_mod
from sharing.errors import Refused

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = REPO / "contracts"
MCA, NHC, PSB, HUANGCUN, JIUGONG, BUREAU = "11011500002", "11011500005", "11011500001", "11011501012", "11011501011", \
    "11011500000"


@pytest.fixture(scope="module")
def c():
    return contracts_mod.load(str(CONTRACTS))


@pytest.fixture(scope="module")
def pol():
    return policy_mod.load(str(CONTRACTS))


@pytest.fixture
def s(tmp_path):
    return Settings.from_env(root=str(tmp_path / "lake"))


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, dst)
    return dst


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _col(data, name):
    return next(x for x in data["columns"] if x["name"] == name)


def _dept(data, code):
    return next(d for d in data["departments"] if d["code"] == code)


# ----------------------------------------------------------------------------- strict contracts

@pytest.mark.parametrize("file, change, words", [
    ("tables/base_population.yaml", lambda d: _col(d, "id_number").update(protec="mask_id"),
     ["(id_number).protec", "unknown key"]),
    ("tables/base_population.yaml", lambda d: _col(d, "id_number").update(protect="mask_idd"),
     ["(id_number).protect", "mask_idd"]),
    ("tables/base_population.yaml", lambda d: _col(d, "phone").update(length=0), ["(phone).length"]),
    ("tables/base_population.yaml", lambda d: d.update(share_grants=["北京市大兴区民政局"]),
     ["share_grants", "北京市大兴区民政局"]),
    ("tables/base_population.yaml", lambda d: d.update(share_grants=["11011599999"]),
     ["share_grants names department code 11011599999", "not registered"]),
    ("tables/base_population.yaml", lambda d: _col(d, "name").update(grade=2),
     ["column 'name' is personal (pii) but graded 2"]),
    ("tables/base_legal_entity.yaml", lambda d: _col(d, "phone").update(grade=4),
     ["column 'phone' has grade 4 above the table's grade 3"]),
    ("tables/base_population.yaml", lambda d: d.update(open_conditon="x"), ["open_conditon", "unknown key"]),
    ("departments.yaml", lambda d: _dept(d, MCA).update(dutys=[]), ["dutys", "unknown key"]),
    ("departments.yaml", lambda d: _dept(d, MCA).update(code="1101150002"), ["code"]),
    ("departments.yaml", lambda d: _dept(d, MCA)["duties"][0].update(resources=["raw.psb_household"]),
     ["names raw.psb_household, which 11011500001 delivers"]),
    ("departments.yaml", lambda d: _dept(d, MCA)["duties"][0].update(resources=["raw.mca_residentz"]),
     ["unknown source 'raw.mca_residentz'"]),
    ("departments.yaml", lambda d: _dept(d, HUANGCUN).update(town="黄村"), ["town '黄村' is not a town"]),
    ("departments.yaml", lambda d: d["departments"].remove(_dept(d, NHC)),
     ["department_code 11011500005 is not registered"]),
    ("departments.yaml", lambda d: _dept(d, BUREAU)["duties"][1].update(resources=["topic.flood_points"]) or
     _dept(d, BUREAU)["duties"][0].update(resources=["topic.flood_points"]), ["named by two duties"]),
    ("sharing.yaml", lambda d: d.update(grade=d.pop("grades")), ["grade", "unknown key"]),
    ("sharing.yaml", lambda d: d["grades"].update({3: "mask"}), ["grades", "'mask'"]),
    ("sharing.yaml", lambda d: d["grades"].update({4: "clear"}), ["a higher grade cannot be protected less"]),
    ("sharing.yaml", lambda d: d["tokens"].update(dayz=3), ["tokens.dayz", "unknown key"]),
])
def test_a_misspelt_or_wrong_sharing_key_is_an_error(tmp_path, file, change, words):
    folder = _copy(tmp_path)
    _edit(folder / file, change)
    with pytest.raises(ContractError) as e:
        contracts_mod.load.__wrapped__(str(folder))
        policy_mod.load.__wrapped__(str(folder))
    msg = str(e.value)
    assert Path(file).name in msg
    for w in words:
        assert w in msg, (w, msg)


def test_duty_to_data_every_resource_has_exactly_one_producing_duty_of_its_provider(c):
    for s in c.sources.values():
        duties = c.duties_of(f"raw.{s.source}")
        assert [d.code for d, _ in duties] == [s.department_code], s.source
    for t in c.built_tables():
        duties = c.duties_of(t.table)
        assert len(duties) == 1 and duties[0][0].name == t.owner, t.table
    assert c.department(HUANGCUN).town == "黄村镇"
    assert set(c.table("base.population").share_grants) <= set(c.departments)


# ----------------------------------------------------------------------------- masks (the oracle)

def test_masking_functions_as_the_issue_writes_them():
    assert masks.mask_id("110115199001011234") == "110115********1234"
    assert masks.mask_mobile("13812345678") == "138****5678"
    assert masks.mask_name("张三") == "张*"
    assert masks.mask_name("欧阳娜娜") == "欧***"
    assert masks.mask_name("𠮷野家") == "𠮷**"  # a character outside the BMP counts as one
    assert masks.mask_id("12345") == "*****" and masks.mask_mobile("1234567") == "*******"
    assert masks.mask_name("") == "" and masks.mask_name("王") == "*"
    assert masks.mask_id(None) is None and masks.to_town(None) is None
    assert masks.to_year(date(1990, 5, 17)) == 1990 and masks.to_year("1990-05-17") == 1990
    assert masks.to_year("not a date") is None
    assert masks.to_town("北京市大兴区黄村地区兴华大街12号院3号楼") == "黄村镇"
    assert masks.to_town("大兴区清源街道办事处枣园路8号") == "清源街道"
    assert masks.to_town("清源路8号") is None  # a bare stem is a road, not a town
    assert masks.to_town("北京市朝阳区某路1号") is None


def test_plan_protects_by_grade_and_a_grant_decides_columns_and_clear(c, pol):
    tc = c.table("base.population")
    p = masks.plan(tc, pol.grades)
    t = dict(p.columns)
    assert "id_number" not in t and "id_number" in p.hidden  # grade 4: excluded by default
    assert t["name"] == "mask_name" and t["phone"] == "mask_mobile" and t["address"] == "to_town"
    assert t["birth_date"] == "to_year" and t["town"] == "clear" and t["gender"] == "clear"
    assert "marital_status" not in t and "subsistence_allowance" not in t  # grade 3, protect: exclude
    g = masks.plan(tc, pol.grades, columns=["id_number", "name", "town"], clear=["name"],
                   row_filter=[{"column": "town", "op": "in", "values": ["黄村镇"]}])
    assert g.columns == (("id_number", "mask_id"), ("name", "clear"), ("town", "clear"))
    assert g.digest() != p.digest()
    rows = [{"id_number": "110115199001011234", "name": "张三", "town": "黄村镇"},
            {"id_number": "110115199001015678", "name": "李四", "town": "旧宫镇"}]
    assert masks.apply_plan_py(rows, g) == [{"id_number": "110115********1234", "name": "张三", "town": "黄村镇"}]


# ----------------------------------------------------------------------------- tokens

def test_tokens_are_stored_hashed_and_refused_for_every_reason(s, c, tmp_path):
    token, rec = tokens.issue(s, c, MCA, days=30)
    assert tokens.verify(s, token).department_code == MCA
    stored = b"".join(Path(p).read_bytes() for p in glob.glob(s.path("_private", "sharing", "tokens") + "/**/*",
                                                                   recursive=True) if Path(p).is_file())
    assert token.encode() not in stored and token.split(".")[2].encode() not in stored
    assert rec.sha256.encode() in stored or len(store.read(s, store.TOKENS)) == 1

    def refused(tok, words):
        with pytest.raises(Refused) as e:
            tokens.verify(s, tok)
        assert e.value.status == 401 and words in e.value.reason, e.value.reason

    refused(None, "no bearer token")
    refused("hello", "malformed bearer token")
    refused("dxs1.000000000000." + "A" * 43, "unknown bearer token 000000000000")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refused(forged, f"bearer token {rec.token_id} does not match")
    old, _ = tokens.issue(s, c, NHC, days=1, now=datetime.now(timezone.utc) - timedelta(days=2))
    refused(old, "expired on")
    tokens.revoke(s, token_id=rec.token_id)
    refused(token, "was revoked")
    with pytest.raises(ContractError, match="unknown department code '11011599999'"):
        tokens.issue(s, c, "11011599999", days=1)
    profile = tmp_path / "p.share"
    t2, r2 = tokens.issue(s, c, MCA, days=5)
    tokens.write_profile(profile, "http://127.0.0.1:8765/delta-sharing", t2, r2.expires_at)
    doc = json.loads(profile.read_text())
    assert doc["shareCredentialsVersion"] == 1 and doc["bearerToken"] == t2
    assert doc["endpoint"] == "http://127.0.0.1:8765/delta-sharing/" and doc["expirationTime"].endswith("Z")
    assert oct(profile.stat().st_mode)[-3:] == "600"


# ----------------------------------------------------------------------------- requests and grants

def test_request_approve_reject_revoke_expire(s, c):
    q = grants.apply(s, c, HUANGCUN, "base.population", "居民服务", "《中华人民共和国户口登记条例》",
                     columns=["person_id", "name", "town", "id_number"], row_filter="town = '黄村镇'", days=30)
    assert q.status == "pending" and q.row_filter == [{"column": "town", "op": "in", "values": ["黄村镇"]}]
    with pytest.raises(grants.RequestError, match="only the department that owns base.population"):
        grants.approve(s, c, q.request_id, by=MCA)
    a = grants.approve(s, c, q.request_id, by=BUREAU, days=10)
    assert a.status == "approved" and a.expires_at > datetime.now(timezone.utc)
    with pytest.raises(grants.RequestError, match="already approved"):
        grants.approve(s, c, q.request_id, by=BUREAU)
    assert grants.active_grants(grants.requests(s), datetime.now(timezone.utc))[(HUANGCUN, "base.population")] \
        .request_id == q.request_id
    assert not grants.active_grants(grants.requests(s), datetime.now(timezone.utc) + timedelta(days=11))
    assert grants.requests(s)[q.request_id].state(datetime.now(timezone.utc) + timedelta(days=11)) == "expired"
    r = grants.apply(s, c, JIUGONG, "base.population", "x", "y")
    assert grants.reject(s, c, r.request_id, BUREAU, "无法定职责依据").status == "rejected"
    assert grants.revoke(s, c, q.request_id, BUREAU, "用途变更").status == "revoked"
    assert not grants.active_grants(grants.requests(s), datetime.now(timezone.utc))


@pytest.mark.parametrize("kw, words", [
    ({"table": "base.iot_reading"}, "not shared (share type none"),
    ({"table": "base.populaton"}, "unknown table 'base.populaton'"),
    ({"columns": ["nmae"]}, "has no column(s) ['nmae']"),
    ({"clear": ["phone"], "columns": ["name"]}, "clear column(s) ['phone'] are not among the columns"),
    ({"row_filter": "town like '黄%'"}, "expected column = 'value'"),
    ({"row_filter": "tonw = '黄村镇'"}, "row filter names column 'tonw'"),
    ({"row_filter": "town = 黄村镇"}, "quote text values"),
    ({"purpose": " "}, "needs a purpose"),
    ({"legal_basis": ""}, "needs a legal basis"),
    ({"days": 5000}, "--days must be between 1 and 730"),
])
def test_a_bad_request_is_refused_with_a_clear_reason(s, c, kw, words):
    args = {"table": "base.population", "purpose": "p", "legal_basis": "b", **kw}
    with pytest.raises(grants.RequestError) as e:
        grants.apply(s, c, HUANGCUN, args.pop("table"), args.pop("purpose"), args.pop("legal_basis"), **args)
    assert words in str(e.value), str(e.value)
    assert not grants.requests(s)


def test_row_filter_round_trip(c):
    tc = c.table("base.population")
    conds = grants.parse_row_filter("town in ('黄村镇', '旧宫镇') and gender = '女'", tc)
    assert conds == [{"column": "town", "op": "in", "values": ["黄村镇", "旧宫镇"]},
                     {"column": "gender", "op": "in", "values": ["女"]}]
    assert grants.parse_row_filter(grants.row_filter_text(conds), tc) == conds


# ----------------------------------------------------------------------------- access decision and hints

def _hint(col, value):
    return json.dumps({"op": "equal", "children": [{"op": "column", "name": col, "valueType": "string"},
                                                   {"op": "literal", "value": value, "valueType": "string"}]})


def test_predicate_hints_over_the_row_filter_or_on_hidden_columns_are_refused(c, pol):
    tc = c.table("base.population")
    p = masks.plan(tc, pol.grades, ["name", "town"], row_filter=[{"column": "town", "op": "in", "values": ["黄村镇"]}])
    acc = access.Access(HUANGCUN, tc.table, "_views/x/base__population", p, "grant")
    access.check_hints(acc, _hint("town", "黄村镇"), None)  # inside the filter: fine
    access.check_hints(acc, None, ["town = '黄村镇'"])
    for jh, sh, status, words in [
        (_hint("town", "旧宫镇"), None, 403, "outside the grant's row filter"),
        (None, ["town = '旧宫镇'"], 403, "outside the grant's row filter"),
        (json.dumps({"op": "or", "children": [json.loads(_hint("town", "黄村镇")), json.loads(_hint("town", "旧宫镇"))]}),
         None, 403, "outside the grant's row filter"),
        (_hint("id_number", "1"), None, 403, "not granted"),
        ("{not json", None, 400, "malformed jsonPredicateHints"),
        (None, ["drop table x"], 400, "malformed predicateHints"),
    ]:
        with pytest.raises(Refused) as e:
            access.check_hints(acc, jh, sh)
        assert e.value.status == status and words in e.value.reason, e.value.reason


@pytest.mark.parametrize("name", ["..", "../_private", "base/population", "base.population", "a b", "%2e%2e", "", "X" * 80])
def test_path_like_or_malformed_names_are_refused(name):
    with pytest.raises(Refused) as e:
        access.check_name("table", name)
    assert e.value.status == 400 and "malformed table name" in e.value.reason


# ----------------------------------------------------------------------------- audit

def test_the_audit_is_append_only(s):
    from deltalake import write_deltalake
    import pyarrow as pa

    audit.record(s, channel="cli", action="read", decision="refused", reason="r", department_code=MCA)
    audit.record(s, channel="http", action="query", decision="granted", rows=3, resource="topic.x")
    assert [r["decision"] for r in audit.records(s)] == ["refused", "granted"]
    with pytest.raises(Exception, match="append-only"):
        write_deltalake(s.path(*store.AUDIT), pa.Table.from_pylist(audit.records(s)[:1], schema=store.AUDIT_SCHEMA),
                        mode="overwrite")
    assert len(audit.records(s)) == 2 and audit.records(s, decision="granted")[0]["rows"] == 3


# ----------------------------------------------------------------------------- the catalogue chain

def _entries(c, pol, codes=None):
    chain = [] if codes is None else codes
    return resources.registered(c, pol.grades, resources._assign_codes(c, chain), {})


def _catalogue_files(s, entries):
    """What resources.publish writes, without Spark: resources.json with the registered fields."""
    from lake import io

    io.write_bytes(s.path("catalog", "resources.json"), json.dumps(list(entries.values()), ensure_ascii=False).encode())


def test_chain_records_changes_and_verify_names_a_tampered_block_or_entry(s, c, pol):
    entries = _entries(c, pol)
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    added = chain_mod.record(s, entries, t0)
    assert added[0]["kind"] == "genesis" and len(added) == 1 + len(entries)
    assert chain_mod.record(s, entries, t0) == []  # nothing changed: no block
    pop = dict(entries["base.population"])
    pop["grants"] = [{"department_code": HUANGCUN, "basis": "request"}]
    changed = {**entries, "base.population": pop}
    b = chain_mod.record(s, changed, t0 + timedelta(days=1))
    assert [(x["kind"], x["resource_id"], x["fields"]) for x in b] == [("grant", "base.population", ["grants"])]
    blocks = chain_mod.blocks(s)
    assert chain_mod.verify_blocks(blocks) is None
    _catalogue_files(s, changed)
    cur = resources.current(s)["catalog/resources.json"]
    assert chain_mod.verify_catalogue(blocks, cur, "catalog/resources.json") is None
    hist = chain_mod.history(blocks, pop["resource_code"])
    assert [h["kind"] for h in hist] == ["added", "grant"] and hist[1]["changes"]["grants"]["from"] == []
    # the current catalogue edited without a block
    cur["base.population"]["share_type"] = "无条件共享"
    msg = chain_mod.verify_catalogue(blocks, cur, "catalog/resources.json")
    assert pop["resource_code"] in msg and "share_type" in msg and "outside the chain" in msg
    # a stored block edited in place (its parquet file rewritten)
    victim = blocks[5]
    for f in glob.glob(s.path("catalog", "chain") + "/*.parquet"):
        t = pq.read_table(f)
        rows = t.to_pylist()
        if any(r["index"] == victim["index"] for r in rows):
            for r in rows:
                if r["index"] == victim["index"]:
                    r["content"] = r["content"].replace(victim["resource_id"], victim["resource_id"] + "x", 1)
            pq.write_table(type(t).from_pylist(rows, schema=t.schema), f)
            _fix_log_size(Path(f))
    msg = chain_mod.verify_blocks(chain_mod.blocks(s))
    assert msg.startswith("block 5 ") and "altered" in msg


def _fix_log_size(f: Path) -> None:
    """What a careful forger does after rewriting a data file: make the Delta log's size match it."""
    for log in (f.parent / "_delta_log").glob("*.json"):
        lines = []
        for line in log.read_text().splitlines():
            a = json.loads(line)
            if "add" in a and a["add"]["path"] == f.name:
                a["add"]["size"] = f.stat().st_size
            lines.append(json.dumps(a))
        log.write_text("\n".join(lines) + "\n")


def test_a_removed_block_breaks_the_links(s, c, pol):
    entries = _entries(c, pol)
    chain_mod.record(s, entries, datetime(2026, 11, 1, tzinfo=timezone.utc))
    blocks = chain_mod.blocks(s)
    del blocks[3]
    assert chain_mod.verify_blocks(blocks).startswith("block 3 is missing")


def test_resource_codes_are_stable_when_a_table_is_added(tmp_path, s, c, pol):
    entries = _entries(c, pol)
    chain_mod.record(s, entries, datetime(2026, 11, 1, tzinfo=timezone.utc))
    before = chain_mod.codes(chain_mod.blocks(s))
    assert before["base.admin_boundary"] == f"110115-{BUREAU}-T0001"  # a fresh lake numbers in id order
    folder = _copy(tmp_path)
    shutil.copy(folder / "tables" / "topic_flood_points.yaml", folder / "tables" / "topic_aaa_first.yaml")
    _edit(folder / "tables" / "topic_aaa_first.yaml", lambda d: d.update(table="topic.aaa_first"))
    c2 = contracts_mod.load.__wrapped__(str(folder))
    assert [t.table for t in c2.built_tables()].index("topic.aaa_first") < \
        [t.table for t in c2.built_tables()].index("topic.flood_points")  # positional codes would shift
    codes = resources._assign_codes(c2, chain_mod.blocks(s))
    assert {k: codes[k] for k in before} == before  # nobody renumbered
    assert codes["topic.aaa_first"] == f"110115-{BUREAU}-T{len(c.built_tables()) + 1:04d}"


def test_catalogue_entries_carry_the_gbt_21063_fields(c, pol):
    e = _entries(c, pol)["base.population"]
    for k in ("resource_code", "classification", "name", "provider", "provider_code", "abstract", "format", "items",
              "share_type", "share_condition", "share_method", "open_type", "open_condition", "update_cycle",
              "related_resources", "duties", "lineage", "grants", "grade"):
        assert k in e, k
    assert e["provider_code"] == BUREAU and e["classification"]["class"] == "基础信息资源"
    item = next(i for i in e["items"] if i["name"] == "id_number")
    assert item == {"name": "id_number", "title": "公民身份号码", "type": "string", "length": 18, "grade": 4,
                    "protection": "exclude", "authoritative_source": "psb_household",
                    "fallback": ["mca_residents", "hrss_insured", "nhc_vital_events"]}
    assert e["lineage"]["columns"]["marital_status"] == ["mca_residents"]
    assert e["duties"][0]["department_code"] == BUREAU
    assert [g["department_code"] for g in _entries(c, pol)["base.population"]["grants"]] == []  # no grants passed
    raw = _entries(c, pol)["raw.psb_household"]
    assert raw["duties"] == [{"department_code": PSB, "department": "北京市公安局大兴分局",
                              "duty": "户口登记、迁移和户籍人口管理"}]
    assert e["resource_code"] in raw["related_resources"]


# ----------------------------------------------------------------------------- metrics

def test_metrics_count_supply_demand_and_reads(s, c):
    now = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
    q = grants.apply(s, c, HUANGCUN, "base.population", "p", "b", now=now - timedelta(hours=6))
    grants.approve(s, c, q.request_id, BUREAU, now=now - timedelta(hours=2))
    grants.apply(s, c, JIUGONG, "base.population", "p", "b", now=now - timedelta(hours=1))
    audit.record(s, channel="http", action="query", decision="granted", resource="base.population",
                 department_code=HUANGCUN, rows=5)
    audit.record(s, channel="cli", action="read", decision="refused", resource="base.population",
                 department_code=JIUGONG)
    audit.record(s, channel="http", action="file", decision="granted", resource="base.population")
    m = metrics.compute(s, now)
    tables = c.built_tables()
    assert m["supply"]["unconditional_share_rate"] == round(sum(t.share_type == "unconditional" for t in tables)
                                                            / len(tables), 4)
    assert m["supply"]["target_met"] is (m["supply"]["unconditional_share_rate"] >= 0.8)
    assert m["demand"]["open_requests"] == 1 and m["demand"]["open"][0]["age_hours"] == 1.0
    assert m["demand"]["time_to_decision_hours"] == {"median": 4.0, "mean": 4.0, "decided": 1}
    assert m["use"]["reads_per_resource"]["base.population"] == {"granted": 1, "refused": 1,
                                                                 "departments": [HUANGCUN]}


# ----------------------------------------------------------------------------- the CLI (no Spark: --no-publish)

def test_cli_requests_and_decisions_act_as_the_department_of_a_profile(tmp_path):
    from typer.testing import CliRunner

    from lake.cli import app

    runner = CliRunner()
    root = ["--root", str(tmp_path / "lake")]

    def run(*args):
        return runner.invoke(app, [*args, *root])

    for code, name in ((HUANGCUN, "hc"), (BUREAU, "bureau"), (PSB, "psb")):
        r = run("share", "token", "issue", "--department", code, "--out", str(tmp_path / f"{name}.share"))
        assert r.exit_code == 0, r.output
    r = run("share", "request", "--profile", str(tmp_path / "hc.share"), "--table", "base.population", "--columns",
            "person_id,name,town", "--row-filter", "town = '黄村镇'", "--purpose", "居民服务", "--legal-basis", "条例",
            "--json")
    assert r.exit_code == 0, r.output
    q = json.loads(r.output)
    assert q["department_code"] == HUANGCUN and q["status"] == "pending" and q["row_filter"] == "town = '黄村镇'"
    r = run("share", "request", "--profile", str(tmp_path / "hc.share"), "--department", PSB, "--table",
            "base.population", "--purpose", "p", "--legal-basis", "b")
    assert r.exit_code == 1 and f"--department {PSB} is not the department of" in r.output
    r = run("share", "request", "--table", "base.population", "--purpose", "p", "--legal-basis", "b")
    assert r.exit_code == 1 and "give --profile" in r.output
    r = run("share", "approve", q["request_id"], "--profile", str(tmp_path / "psb.share"), "--no-publish")
    assert r.exit_code == 1 and "only the department that owns base.population" in r.output
    r = run("share", "approve", q["request_id"], "--profile", str(tmp_path / "bureau.share"), "--days", "30",
            "--no-publish")
    assert r.exit_code == 0, r.output
    rows = json.loads(run("share", "requests", "--json").output)
    assert [(x["request_id"], x["status"]) for x in rows] == [(q["request_id"], "approved")]
    assert json.loads(run("share", "requests", "--status", "pending", "--json").output) == []
    r = run("share", "reject", "R-nope", "--by", BUREAU, "--reason", "x")
    assert r.exit_code == 1 and "unknown request 'R-nope'" in r.output
    r = run("share", "audit", "--decision", "maybe")
    assert r.exit_code == 1 and "granted or refused" in r.output
    tokens_json = json.loads(run("share", "token", "list", "--json").output)
    assert {t["department_code"] for t in tokens_json} == {HUANGCUN, BUREAU, PSB}
    assert not any("dxs1." in json.dumps(t) for t in tokens_json)
    r = run("catalog", "verify")
    assert r.exit_code == 1 and "no catalogue chain yet" in r.output
