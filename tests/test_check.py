"""``lake check``: the ingest checks on one file, without landing anything.

Files are written here from the source contract itself (a valid value per column type and check), so
the tests follow contract changes; one cell is then broken on purpose.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lake import contracts
from lake.cli import app
from sample.identifiers import make_cn_id, make_uscc
from lake.settings import Settings

runner = CliRunner()


def source_contract(name: str, contracts_dir: str | None = None):
    return contracts.load(contracts_dir or Settings().contracts_dir).source(name)


def valid_row(sc, i: int) -> dict:
    """A row that passes every ingest check of ``sc`` (record key R0001, ...)."""
    birth = dt.date(1980, 1, 1) + dt.timedelta(days=i)
    id_number = make_cn_id("110115", birth, 2 * (i % 400) + 1, male=True)
    row = {}
    for c in sc.columns:
        if c.name == sc.record_key:
            v = f"R{i:04d}"
        elif "cn_id" in c.checks:
            v = id_number
        elif "cn_uscc" in c.checks:
            v = make_uscc("9", "1", "110115", f"{i:08d}X")
        elif "cn_phone" in c.checks:
            v = f"138{i:08d}"
        elif c.allowed:
            v = "男" if "男" in c.allowed else c.allowed[0]
        elif c.name == sc.deregistration.get("date"):
            v = ""  # the status is an active one (allowed[0]): no deregistration date
        elif c.type == "date":
            v = birth.isoformat()
        elif c.type != "string":
            v = "1"
        else:
            v = f"值{i}"
        row[c.name] = v
    return row


def write_csv(path: Path, sc, rows: list[dict], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.DictWriter(f, fieldnames=sc.column_names)
        w.writeheader()
        w.writerows(rows)
    return path


def id_column(sc) -> str:
    return next(c.name for c in sc.columns if "cn_id" in c.checks)


def bad_checksum(id_number: str) -> str:
    last = "0" if id_number[-1] != "0" else "1"
    return id_number[:-1] + last


@pytest.fixture(scope="module")
def psb():
    return source_contract("psb_household")


@pytest.fixture(scope="module")
def good_file(tmp_path_factory, psb):
    return write_csv(tmp_path_factory.mktemp("check") / "psb_good.csv", psb, [valid_row(psb, i) for i in range(1, 6)])


@pytest.fixture(scope="module")
def bad_id_file(tmp_path_factory, psb):
    rows = [valid_row(psb, i) for i in range(1, 6)]
    rows[2][id_column(psb)] = bad_checksum(rows[2][id_column(psb)])  # record R0003, line 4 (header = line 1)
    return write_csv(tmp_path_factory.mktemp("check") / "psb_bad_id.csv", psb, rows)


def check(*args, env=None):
    return runner.invoke(app, ["check", *args], env=env)


def test_a_good_file_passes(spark, good_file, tmp_path):
    r = check("--source", "psb_household", str(good_file), "--root", str(tmp_path / "lake"))
    assert r.exit_code == 0, r.output
    assert "passed" in r.stdout and "Traceback" not in r.output


def test_a_bad_id_blocks_and_names_the_row(spark, bad_id_file, tmp_path):
    r = check("--source", "psb_household", str(bad_id_file), "--root", str(tmp_path / "lake"))
    assert r.exit_code == 1, r.output
    assert "cn_id.checksum" in r.stdout and "blocked" in r.stdout
    assert re.search(r"│\s*4\s*│\s*R0003", r.stdout), r.stdout  # line 4 of the file, record R0003


def test_json_output_parses_and_counts_add_up(spark, bad_id_file, tmp_path):
    r = check("--source", "psb_household", str(bad_id_file), "--json", "--root", str(tmp_path / "lake"))
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["rows_read"] == 5 and doc["would_land"] == 4 and doc["would_quarantine"] == 1
    assert doc["rows_read"] == doc["would_land"] + doc["would_quarantine"]
    assert doc["passed"] is False and doc["blocking_findings"] == 1
    [p] = [p for p in doc["problems"] if p["rule"] == "cn_id.checksum"]
    assert p["row"] == 4 and p["record_key"] == "R0003" and p["quarantined"] and p["defect_type"] == "id_checksum"
    assert doc["by_severity"]["error"] == 1 and doc["by_defect_type"]["id_checksum"] == 1


def test_nothing_is_written_to_the_lake(spark, good_file, bad_id_file, tmp_path):
    root = tmp_path / "lake"
    (root / "inbox").mkdir(parents=True)
    for f in (good_file, bad_id_file):
        check("--source", "psb_household", str(f), "--root", str(root))
    assert [p for p in root.rglob("*") if p != root / "inbox"] == []
    assert good_file.is_file() and bad_id_file.is_file()  # the checked files are left alone


def test_warnings_do_not_block_by_default(spark, psb, tmp_path):
    rows = [valid_row(psb, i) for i in range(1, 4)]
    phone = next(c.name for c in psb.columns if "cn_phone" in c.checks)
    rows[1][phone] = "12345"
    f = write_csv(tmp_path / "psb_phone.csv", psb, rows)
    r = check("--source", "psb_household", str(f), "--json", "--root", str(tmp_path / "lake"))
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["passed"] and doc["findings"] >= 1
    assert doc["by_severity"].get("warning", 0) >= 1 and doc["would_land"] == 3


def test_policy_decides_what_blocks(spark, bad_id_file, tmp_path):
    cdir = tmp_path / "contracts"
    shutil.copytree(Settings().contracts_dir, cdir)
    (cdir / "policy.yaml").write_text("check: {blocking_severities: []}\n", encoding="utf-8")
    r = check("--source", "psb_household", str(bad_id_file), "--root", str(tmp_path / "lake"),
              env={"LAKE_CONTRACTS": str(cdir)})
    assert r.exit_code == 0, r.output
    (cdir / "policy.yaml").write_text("check: {blocking_severity: [error]}\n", encoding="utf-8")
    r = check("--source", "psb_household", str(bad_id_file), "--root", str(tmp_path / "lake"),
              env={"LAKE_CONTRACTS": str(cdir)})
    assert r.exit_code == 2 and "check.blocking_severity" in r.output and "Traceback" not in r.output


def test_unknown_source_exits_2_with_a_clear_message(tmp_path, good_file):
    r = check("--source", "police", str(good_file), "--root", str(tmp_path / "lake"))
    assert r.exit_code == 2
    assert "unknown source 'police'" in r.output and "psb_household" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_missing_and_undecodable_files_exit_2(tmp_path):
    r = check("--source", "psb_household", str(tmp_path / "nope.csv"), "--root", str(tmp_path / "lake"))
    assert r.exit_code == 2 and "no such file" in r.output and "Traceback" not in r.output
    samr = source_contract("samr_enterprises")
    f = tmp_path / "samr_gbk.csv"
    f.write_bytes((",".join(samr.column_names) + "\n" + ",".join(["名称"] * len(samr.column_names)) + "\n").encode("gbk"))
    r = check("--source", "samr_enterprises", str(f), "--root", str(tmp_path / "lake"))
    assert r.exit_code == 2 and "samr_gbk.csv" in r.output and "Traceback" not in r.output
