"""Fast tier for issue 17: the contracts' delivery and history_checks keys and the policy's history
key are strict, the history check arithmetic, the generator's days, lake query's read-only guard."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from lake import contracts as contracts_mod
from lake import policy as policy_mod
from lake.contracts import ContractError
from quality import history_checks

REPO = Path(__file__).resolve().parent.parent


def _contracts_with(tmp_path: Path, source: str, patch) -> Path:
    dst = tmp_path / "contracts"
    shutil.copytree(REPO / "contracts", dst)
    p = dst / "sources" / f"{source}.yaml"
    d = yaml.safe_load(p.read_text(encoding="utf-8"))
    patch(d)
    p.write_text(yaml.safe_dump(d, allow_unicode=True), encoding="utf-8")
    contracts_mod.load.cache_clear()
    return dst


@pytest.mark.parametrize("source, patch, message", [
    ("psb_household", lambda d: d["delivery"].update({"op_colum": "op"}), "delivery.op_colum: unknown key"),
    ("psb_household", lambda d: d["delivery"].update({"mode": "diff"}), "delivery.mode"),
    ("psb_household", lambda d: d["history_checks"].update({"windw": 7}), "history_checks.windw: unknown key"),
    ("mca_social_orgs", lambda d: d["history_checks"]["columns"]["phone"].update({"null_rate_max_rse": 0.2}),
     "null_rate_max_rse: unknown key"),
    ("mca_social_orgs", lambda d: d["history_checks"]["columns"].update({"phon": {"null_rate_max_rise": 0.2}}),
     "names column 'phon'"),
    ("mca_social_orgs", lambda d: d["history_checks"].update({"rows": {"max_drop": 1.5}}), "history_checks.rows.max_drop"),
    ("psb_household", lambda d: d["delivery"].update({"op_column": "town"}), "must not be one of the columns"),
])
def test_delivery_and_history_keys_are_strict(tmp_path, source, patch, message):
    folder = _contracts_with(tmp_path, source, patch)
    with pytest.raises(ContractError, match=message.replace("(", r"\(")):
        contracts_mod.load(str(folder))
    contracts_mod.load.cache_clear()


def test_contracts_declare_deliveries():
    c = contracts_mod.load(str(REPO / "contracts"))
    assert c.source("psb_household").op_column == "op"
    assert c.source("mca_social_orgs").snapshot and c.source("seo_institutions").snapshot
    assert not c.source("nhc_vital_events").op_column and not c.source("nhc_vital_events").snapshot
    assert c.source("mca_social_orgs").history_checks["rows"]["max_drop"] == 0.3


def test_policy_history_key_is_strict():
    assert policy_mod.parse({"history": {"block_publication": True}}).history_block_publication
    assert not policy_mod.parse({}).history_block_publication
    with pytest.raises(ContractError, match="history.block_publicaton"):
        policy_mod.parse({"history": {"block_publicaton": True}})
    with pytest.raises(ContractError, match="must be true or false"):
        policy_mod.parse({"history": {"block_publication": "yes"}})
    assert policy_mod.load(str(REPO / "contracts")).history_block_publication


HC = {"window": 7, "min_deliveries": 3, "min_rows": 10, "rows": {"max_drop": 0.3, "max_rise": 1.0},
      "columns": {"phone": {"null_rate_max_rise": 0.3, "distinct": None, "mean_max_change": None},
                  "name": {"null_rate_max_rise": None, "distinct": {"max_drop": 0.3, "max_rise": None},
                           "mean_max_change": None},
                  "capital": {"null_rate_max_rise": None, "distinct": None, "mean_max_change": 0.5}}}
PAST = {("rows", ""): [100, 102, 98, 101, 99], ("null_rate", "phone"): [0.1, 0.12, 0.09, 0.11, 0.1],
        ("distinct", "name"): [95, 96, 97, 95, 94], ("mean", "capital"): [10.0, 11.0, 9.0, 10.0, 10.5]}


def test_history_check_bounds():
    ok = history_checks.evaluate([("rows", "", 95.0), ("null_rate", "phone", 0.15), ("distinct", "name", 90.0),
                                  ("mean", "capital", 12.0)], PAST, HC, 95)
    assert [r["passed"] for r in ok] == [True, True, True, True]
    assert ok[0]["baseline"] == 100 and ok[0]["lower"] == pytest.approx(70)
    truncated = history_checks.evaluate([("rows", "", 60.0)], PAST, HC, 60)
    assert not truncated[0]["passed"] and "median 100" in truncated[0]["message"]
    emptied = history_checks.evaluate([("null_rate", "phone", 1.0)], PAST, HC, 100)
    assert not emptied[0]["passed"] and emptied[0]["upper"] == pytest.approx(0.4)
    shifted = history_checks.evaluate([("mean", "capital", 20.0)], PAST, HC, 100)
    assert not shifted[0]["passed"]
    # too few earlier deliveries, or too few rows: not checked
    assert history_checks.evaluate([("rows", "", 10.0)], {("rows", ""): [100, 100]}, HC, 10) == []
    assert history_checks.evaluate([("rows", "", 5.0)], {("rows", ""): [8, 9, 8]}, HC, 5) == []


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    from sample.generate_days import generate_days

    out = tmp_path_factory.mktemp("days")
    generate_days(3, 0.001, 11, out, iot_days=0)
    return out


def test_generate_days_layout(days):
    from sample.generate_days import generate_days

    m = [json.loads((days / f"day-{k:02d}" / "manifest.json").read_text(encoding="utf-8")) for k in (1, 2, 3)]
    assert [x["as_of"] for x in m] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert {f["kind"] for f in m[0]["files"]} == {"full"}
    kinds = {f["source"]: f["kind"] for f in m[1]["files"]}
    assert kinds["psb_household"] == "changes" and kinds["mca_social_orgs"] == "snapshot"
    for k in (2, 3):
        folder = days / f"day-{k:02d}"
        assert {"defects.csv", "links.csv", "changes.csv"} <= {p.name for p in (folder / "truth").iterdir()}
        psb = next((folder / "psb_household").iterdir())
        with open(psb, encoding="gb18030", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0][0] == "op" and {r[0] for r in rows[1:]} <= {"I", "U", "D"}
        with open(folder / "truth" / "changes.csv", encoding="utf-8") as f:
            changes = list(csv.DictReader(f))
        assert {c["op"] for c in changes if c["source"] == "psb_household"} >= {"I", "U"}
    # a snapshot is the whole list: about as many rows as the day before
    n = [next(f["rows"] for f in x["files"] if f["source"] == "mca_social_orgs") for x in m]
    assert all(abs(n[i + 1] - n[i]) <= max(3, n[i] // 10) for i in range(2))
    # deterministic
    again = days.parent / "again"
    generate_days(3, 0.001, 11, again, iot_days=0)
    for k in (2, 3):
        a = json.loads((again / f"day-{k:02d}" / "manifest.json").read_text(encoding="utf-8"))
        assert [f["sha256"] for f in a["files"]] == [f["sha256"] for f in m[k - 1]["files"]]


def test_daily_defects_are_in_the_files(days):
    """Every recorded defect of a change file names a row of that day's file."""
    for k in (2, 3):
        folder = days / f"day-{k:02d}"
        with open(folder / "truth" / "defects.csv", encoding="utf-8") as f:
            truth = list(csv.DictReader(f))
        text = "".join(p.read_text(encoding="gb18030" if p.suffix == ".csv" else "utf-8", errors="replace")
                       for p in folder.glob("*/*.*"))
        for t in truth:
            assert t["record_key"] in text, t


def test_query_is_read_only(tmp_path):
    from lake.asof import QueryError, query
    from lake.settings import Settings

    s = Settings.from_env(root=str(tmp_path))
    for sql in ("COPY (SELECT 1) TO 'x.csv'", "SELECT 1; SELECT 2", "ATTACH 'x.db'", "CREATE TABLE t (a int)"):
        with pytest.raises(QueryError, match="only one SELECT"):
            query(s, "2026-11-01", sql)
    with pytest.raises(QueryError, match="--as-of must be a date"):
        query(s, "2026-13-01", "SELECT 1")


def test_cli_query_refuses_writes_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from lake.cli import app

    r = CliRunner().invoke(app, ["query", "--as-of", "2026-11-01", "--root", str(tmp_path),
                                 "COPY (SELECT 1) TO 'x.csv'"])
    assert r.exit_code == 1 and "only one SELECT" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["generate", "--days", "-1", "--out", str(tmp_path / "d")])
    assert r.exit_code != 0 and "--days" in r.output
