"""The Delta Sharing server on 127.0.0.1, read with the official ``delta-sharing`` client (the oracle),
without a JVM: views are written here with deltalake from the plain-Python masks (the Spark-built views
are tested in test_sharing_e2e.py). Covers the protocol (shares, schemas, tables, version, metadata,
query in both response formats, pagination), each department's own masked and filtered view, every
refusal the issue lists with its audit record, and readers during a publication."""
from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timedelta, timezone

import delta_sharing
import pyarrow as pa
import pytest
import requests
from deltalake import write_deltalake

from lake import contracts as contracts_mod
from lake.settings import Settings
from sharing import access, audit, grants, masks, server, tokens
from sharing import policy as policy_mod

MCA, PSB, HUANGCUN, BUREAU = "11011500002", "11011500001", "11011501012", "11011500000"
TOWNS = ["黄村镇", "旧宫镇", "清源街道"]


def _people(n=60):
    out = []
    for i in range(n):
        town = TOWNS[i % 3]
        out.append({"person_id": f"P{i:05d}", "id_number": f"110115{1950 + i:04d}0101{i:03d}{i % 10}",
                    "name": ["张三", "欧阳娜娜", "𠮷野", "王"][i % 4] + str(i), "gender": "男女"[i % 2],
                    "birth_date": date(1950 + i, 1, 1), "ethnicity": "汉族", "phone": f"138{i:08d}", "town": town,
                    "address": f"北京市大兴区{town.replace('镇', '地区')}兴华大街{i}号", "register_status": "正常",
                    "death_date": None, "marital_status": "已婚", "subsistence_allowance": "否",
                    "employment_status": "在业", "insurance_types": "养老"})
    return out


AGE = [{"town": t, "age_band": b, "gender": g, "persons": 10 + i}
       for i, (t, b, g) in enumerate([(t, b, g) for t in TOWNS for b in ("0-17", "18-59") for g in "男女"])]


def _arrow(rows: list[dict], plan: masks.Plan, tc) -> pa.Table:
    types = {"string": pa.string(), "date": pa.date32(), "int": pa.int32(), "long": pa.int64()}
    fields = []
    for name, t in plan.columns:
        typ = tc.column(name).type
        fields.append((name, pa.int32() if t == "to_year" else types.get(typ, pa.string())))
    return pa.Table.from_pylist(masks.apply_plan_py(rows, plan), schema=pa.schema(fields))


def _publish(s, c, pol, tc, rows, key, plan, dept):
    """Write one view the way sharing.views would (oracle masks) and list it in share/_grants."""
    view = access.view_path(key, tc.table)
    write_deltalake(s.path("share", view), _arrow(rows, plan, tc), mode="overwrite")
    return {"view": view, "table_id": tc.table, "department_code": dept, "plan_digest": plan.digest()}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharelake")
    s = Settings.from_env(root=str(root))
    c = contracts_mod.load(s.contracts_dir)
    pol = policy_mod.load(s.contracts_dir)
    people = _people()
    pop, age = c.table("base.population"), c.table("topic.population_by_town_age_band")
    q = grants.apply(s, c, HUANGCUN, "base.population", "辖区居民服务", "《北京市街道办事处条例》",
                     columns=["person_id", "id_number", "name", "town", "phone"], clear=["phone"],
                     row_filter="town = '黄村镇'", days=30)
    grants.approve(s, c, q.request_id, BUREAU)
    gplan = masks.plan(pop, pol.grades, q.columns, q.clear_columns, q.row_filter)
    rows = [_publish(s, c, pol, age, AGE, "_default", masks.plan(age, pol.grades), "*"),
            _publish(s, c, pol, pop, people, "_default", masks.plan(pop, pol.grades), MCA),
            _publish(s, c, pol, pop, people, HUANGCUN, gplan, HUANGCUN)]
    write_deltalake(s.path("share", "_grants"), pa.Table.from_pylist(rows))
    profiles = {}
    for code in (MCA, PSB, HUANGCUN):
        tok, rec = tokens.issue(s, c, code, 30)
        profiles[code] = (tok, rec)
    with server.Background(s) as srv:
        paths = {}
        for code, (tok, rec) in profiles.items():
            p = root / f"{code}.share"
            tokens.write_profile(p, srv.endpoint, tok, rec.expires_at)
            paths[code] = str(p)
        yield {"s": s, "c": c, "pol": pol, "srv": srv, "profiles": paths, "tokens": profiles, "people": people,
               "gplan": gplan, "root": root}


def _url(lake, code, table):
    return f"{lake['profiles'][code]}#daxing.{table}"


def _last_audit(lake, **kw):
    recs = audit.records(lake["s"], **kw)
    assert recs, kw
    return recs[-1]


def test_protocol_listing_shows_each_department_only_what_it_may_read(lake):
    mca = delta_sharing.SharingClient(lake["profiles"][MCA])
    assert [x.name for x in mca.list_shares()] == ["daxing"]
    assert sorted((t.schema, t.name) for t in mca.list_all_tables()) == [
        ("base", "population"), ("topic", "population_by_town_age_band")]
    psb = delta_sharing.SharingClient(lake["profiles"][PSB])
    assert [(t.schema, t.name) for t in psb.list_all_tables()] == [("topic", "population_by_town_age_band")]
    h = {"Authorization": f"Bearer {lake['tokens'][MCA][0]}"}
    ep = lake["srv"].endpoint
    r = requests.get(f"{ep}/shares/daxing/all-tables", params={"maxResults": 1}, headers=h)
    assert len(r.json()["items"]) == 1 and r.json()["nextPageToken"] == "1"
    r2 = requests.get(f"{ep}/shares/daxing/all-tables", params={"maxResults": 1, "pageToken": "1"}, headers=h)
    assert len(r2.json()["items"]) == 1 and "nextPageToken" not in r2.json()
    assert [x["name"] for x in requests.get(f"{ep}/shares/daxing/schemas", headers=h).json()["items"]] == ["base", "topic"]
    v = requests.get(f"{ep}/shares/daxing/schemas/topic/tables/population_by_town_age_band/version", headers=h)
    assert v.status_code == 200 and v.headers["Delta-Table-Version"] == "0"
    m = requests.get(f"{ep}/shares/DAXING/schemas/base/tables/Population/metadata", headers=h)  # case-insensitive
    lines = [json.loads(x) for x in m.text.splitlines()]
    assert m.headers["content-type"].startswith("application/x-ndjson") and lines[0] == {"protocol": {"minReaderVersion": 1}}
    schema = json.loads(lines[1]["metaData"]["schemaString"])
    assert [f["name"] for f in schema["fields"]] == masks.plan(lake["c"].table("base.population"),
                                                               lake["pol"].grades).names


def test_unconditional_table_reads_exactly_with_load_as_pandas(lake):
    df = delta_sharing.load_as_pandas(_url(lake, PSB, "topic.population_by_town_age_band"))
    got = sorted(map(tuple, df[["town", "age_band", "gender", "persons"]].values.tolist()))
    assert got == sorted((r["town"], r["age_band"], r["gender"], r["persons"]) for r in AGE)
    rec = _last_audit(lake, action="query")
    assert (rec["department_code"], rec["resource"], rec["rows"], rec["decision"]) == \
        (PSB, "topic.population_by_town_age_band", len(AGE), "granted")


def test_contract_grantee_gets_the_default_masked_view(lake):
    df = delta_sharing.load_as_pandas(_url(lake, MCA, "base.population"))
    assert "id_number" not in df.columns and "marital_status" not in df.columns
    expected = masks.apply_plan_py(lake["people"], masks.plan(lake["c"].table("base.population"), lake["pol"].grades))
    got = df.sort_values("person_id").to_dict("records")
    assert len(got) == len(expected) == 60
    for g, e in zip(got, sorted(expected, key=lambda r: r["person_id"])):
        assert g["name"] == e["name"] and g["phone"] == e["phone"] and g["address"] == e["address"]
        assert int(g["birth_date"]) == e["birth_date"]
    assert df["phone"].str.fullmatch(r"138\*{4}\d{4}").all() and df["name"].str[1:].str.fullmatch(r"\*+").all()
    assert set(df["address"]) == set(TOWNS)


def test_a_grant_serves_its_columns_and_its_row_filter_only(lake):
    df = delta_sharing.load_as_pandas(_url(lake, HUANGCUN, "base.population"))
    assert list(df.columns) == ["person_id", "id_number", "name", "phone", "town"]  # contract order
    assert set(df["town"]) == {"黄村镇"} and len(df) == 20
    assert df["id_number"].str.fullmatch(r"110115\*{8}\d{3}\d").all()
    people = {p["person_id"]: p for p in lake["people"]}
    assert all(people[r["person_id"]]["phone"] == r["phone"] for r in df.to_dict("records"))  # clear by grant
    rec = _last_audit(lake, action="query", department=HUANGCUN)
    assert rec["rows"] == 20 and rec["columns"] == list(df.columns) and rec["purpose"] == "辖区居民服务"


def test_query_hints_inside_the_filter_work_and_outside_are_refused(lake):
    inside = json.dumps({"op": "equal", "children": [{"op": "column", "name": "town", "valueType": "string"},
                                                     {"op": "literal", "value": "黄村镇", "valueType": "string"}]},
                        ensure_ascii=False)
    assert len(delta_sharing.load_as_pandas(_url(lake, HUANGCUN, "base.population"), jsonPredicateHints=inside)) == 20
    outside = inside.replace("黄村镇", "旧宫镇")
    with pytest.raises(requests.HTTPError) as e:
        delta_sharing.load_as_pandas(_url(lake, HUANGCUN, "base.population"), jsonPredicateHints=outside)
    assert e.value.response.status_code == 403 and "outside the grant's row filter" in e.value.response.text
    assert "旧宫镇" in _last_audit(lake, decision="refused", department=HUANGCUN)["reason"]


def _refused(lake, method, path, token=None, body=None, status=403, words=""):
    ep = lake["srv"].endpoint
    h = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.request(method, ep + path, headers=h, data=body)
    assert r.status_code == status, (r.status_code, r.text)
    doc = r.json()
    assert set(doc) == {"errorCode", "message"} and words in doc["message"], doc
    for p in lake["people"][:5]:  # a refusal reveals nothing of the data
        assert p["name"] not in r.text and p["id_number"][:10] not in r.text
    rec = audit.records(lake["s"])[-1]
    assert rec["decision"] == "refused" and rec["status"] == status and words in rec["reason"]
    return rec


def test_every_bad_input_gets_a_clear_refusal_and_an_audit_record(lake, tmp_path):
    s, c = lake["s"], lake["c"]
    mca = lake["tokens"][MCA][0]
    q = "/shares/daxing/schemas/base/tables/population/query"
    _refused(lake, "POST", q, None, "{}", 401, "no bearer token")
    _refused(lake, "POST", q, "dxs1.abcdefabcdef." + "x" * 43, "{}", 401, "unknown bearer token abcdefabcdef")
    _refused(lake, "POST", q, mca[:-3] + ("aaa" if not mca.endswith("aaa") else "bbb"), "{}", 401, "forged")
    _refused(lake, "POST", q, "Bearer-ish nonsense", "{}", 401, "malformed bearer token")
    old, _ = tokens.issue(s, c, MCA, 1, now=datetime.now(timezone.utc) - timedelta(days=3))
    _refused(lake, "POST", q, old, "{}", 401, "expired")
    tok, rec = tokens.issue(s, c, MCA, 1)
    tokens.revoke(s, token_id=rec.token_id)
    r = _refused(lake, "POST", q, tok, "{}", 401, "was revoked")
    assert r["token_id"] == rec.token_id and tok not in json.dumps(r, default=str)  # the token itself never
    assert r["department_code"] == MCA  # who tried, when the token is known
    psb = lake["tokens"][PSB][0]
    _refused(lake, "POST", q, psb, "{}", 403, f"department {PSB} has no grant for daxing.base.population")
    _refused(lake, "GET", "/shares/daxing/schemas/base/tables/iot_reading/metadata", psb, None, 403, "not shared")
    _refused(lake, "GET", "/shares/daxing/schemas/base/tables/nope/metadata", psb, None, 404, "no table daxing.base.nope")
    _refused(lake, "GET", "/shares/daxing/schemas/base/tables/..%2F_private/metadata", psb, None, 400, "malformed path")
    _refused(lake, "GET", "/shares/daxing/schemas/base/tables/%2e%2e/metadata", psb, None, 400, "malformed")
    _refused(lake, "GET", "/shares/daxing/schemas/base/tables/pop%20ulation/metadata", psb, None, 400, "malformed table")
    _refused(lake, "GET", "/shares/daxing/schemas/b.a/tables/x/metadata", psb, None, 400, "malformed schema")
    _refused(lake, "GET", "/shares/other/schemas", psb, None, 404, "no share 'other'")
    _refused(lake, "POST", q, mca, "{not json", 400, "must be a JSON object")
    _refused(lake, "POST", q, mca, json.dumps({"version": 99}), 400, "history is not shared")
    _refused(lake, "POST", q, mca, json.dumps({"predicateHints": ["id_number = '1'"]}), 403, "not granted")
    _refused(lake, "GET", "/shares/daxing/schemas/base/tables/population/changes?startingVersion=0", mca, None, 400,
             "change data feed is not shared")
    _refused(lake, "GET", "/files/not-a-signed-id", None, None, 403, "not one this server signed")


def test_file_urls_are_signed_expire_and_die_with_their_token(lake):
    from itsdangerous import URLSafeTimedSerializer

    s, c = lake["s"], lake["c"]
    tok, rec = tokens.issue(s, c, MCA, 1)
    h = {"Authorization": f"Bearer {tok}"}
    ep = lake["srv"].endpoint
    r = requests.post(f"{ep}/shares/daxing/schemas/base/tables/population/query", json={}, headers=h)
    files = [json.loads(x)["file"] for x in r.text.splitlines()[2:]]
    assert files and all(f["url"].startswith(ep + "/files/") and f["expirationTimestamp"] > time.time() * 1000
                         for f in files)
    assert requests.get(files[0]["url"]).content[:4] == b"PAR1"
    assert "id_number" not in requests.get(files[0]["url"]).content.decode("latin-1")  # the view, not the copy
    tampered = files[0]["url"][:-3] + ("AAA" if not files[0]["url"].endswith("AAA") else "BBB")
    assert requests.get(tampered).status_code == 403

    from itsdangerous import TimestampSigner

    class PastSigner(TimestampSigner):  # signed an hour ago: past the 15-minute validity
        def get_timestamp(self):
            return int(time.time()) - 3600

    from sharing import store
    payload = URLSafeTimedSerializer(store.signing_key(s), salt="daxing-lake-share-file").loads(
        files[0]["url"].rsplit("/", 1)[1])
    old = URLSafeTimedSerializer(store.signing_key(s), salt="daxing-lake-share-file", signer=PastSigner).dumps(payload)
    r = requests.get(f"{ep}/files/{old}")
    assert r.status_code == 403 and "expired" in r.json()["message"]
    tokens.revoke(s, token_id=rec.token_id)
    r = requests.get(files[0]["url"])
    assert r.status_code == 401 and "no longer valid" in r.json()["message"]


def test_delta_response_format_wraps_delta_actions(lake):
    h = {"Authorization": f"Bearer {lake['tokens'][MCA][0]}", "delta-sharing-capabilities": "responseformat=delta"}
    r = requests.post(f"{lake['srv'].endpoint}/shares/daxing/schemas/topic/tables/population_by_town_age_band/query",
                      json={}, headers=h)
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert r.headers["delta-sharing-capabilities"] == "responseformat=delta"
    assert lines[0]["protocol"]["deltaProtocol"]["minReaderVersion"] == 1
    assert json.loads(lines[1]["metaData"]["deltaMetadata"]["schemaString"])["type"] == "struct"
    add = lines[2]["file"]["deltaSingleAction"]["add"]
    assert add["path"].startswith(lake["srv"].endpoint + "/files/") and json.loads(add["stats"])["numRecords"] == len(AGE)
    h["delta-sharing-capabilities"] = "responseformat=delta,parquet"  # the client's autoresolve: parquet here
    r = requests.get(f"{lake['srv'].endpoint}/shares/daxing/schemas/topic/tables/population_by_town_age_band/metadata",
                     headers=h)
    assert r.headers["delta-sharing-capabilities"] == "responseformat=parquet"


def test_readers_see_one_whole_version_during_a_publication(lake):
    """The view is overwritten again and again (two contents, several files each) while readers load
    it: every read is exactly one of the two versions, never a mix or a partial one."""
    s, c, pol = lake["s"], lake["c"], lake["pol"]
    tc = c.table("topic.population_by_town_age_band")
    plan = masks.plan(tc, pol.grades)
    a = [dict(r, persons=1) for r in AGE] * 3
    b = [dict(r, persons=2) for r in AGE] * 5
    uri = s.path("share", access.view_path("_default", tc.table))
    stop = threading.Event()
    errors = []

    def publish():
        i = 0
        try:
            while not stop.is_set():
                rows = a if i % 2 else b
                t = _arrow(rows, plan, tc)
                batches = pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=len(rows) // 2))
                write_deltalake(uri, batches, mode="overwrite", target_file_size=1)  # two files per version
                i += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    w = threading.Thread(target=publish)
    w.start()
    seen = set()
    try:
        for _ in range(12):
            df = delta_sharing.load_as_pandas(_url(lake, PSB, "topic.population_by_town_age_band"))
            kinds = set(df["persons"])
            original = (kinds, len(df)) == ({r["persons"] for r in AGE}, len(AGE))  # before the first rewrite
            assert original or (kinds, len(df)) in (({1}, len(a)), ({2}, len(b))), (kinds, len(df))
            seen.add(len(df))
    finally:
        stop.set()
        w.join()
    assert not errors
    assert {len(a), len(b)} <= seen, "the publisher never overlapped the reads; the test proved nothing"
