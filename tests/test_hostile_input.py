"""Hostile bytes (lake.hostile): control characters, empty deliveries, huge values, wrong encodings,
bad JSON lines, and a failed parse that must leave no staging file behind.

Files are written here from the source contracts (a valid value per column), then broken on purpose."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lake import contracts
from lake.cli import app
from lake.settings import Settings
from test_check import valid_row, write_csv  # rows that pass every ingest check

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def contract(name: str, contracts_dir: str | None = None):
    return contracts.load(contracts_dir or str(REPO / "contracts")).source(name)


def check_json(path: Path, source: str, root: Path, env: dict | None = None):
    r = runner.invoke(app, ["check", "--source", source, str(path), "--json", "--root", str(root)], env=env)
    return r, (json.loads(r.stdout) if r.exit_code in (0, 1) else None)


# ------------------------------------------------------------------ encodings (no Spark)

@pytest.mark.parametrize("data, declared, expected", [
    ("姓名,号\n张三,1\n".encode("utf-16"), "utf-8",
     "declared utf-8; not read as UTF-8: the bytes look like UTF-16-LE (byte-order mark FF FE)"),
    ("name,id\nzhang,1\n".encode("utf-16-le"), "utf-8",
     "declared utf-8; not read as UTF-8: the bytes look like UTF-16-LE (no byte-order mark; every second byte is NUL)"),
    ("name,id\nzhang,1\n".encode("utf-16-be"), "gbk",
     "declared gbk; not read as UTF-8 or GB18030: the bytes look like UTF-16-BE (no byte-order mark"),
    ("姓名,号\n张三,1\n".encode("gbk"), "utf-8",
     "declared utf-8; tried UTF-8: byte 0 is not valid UTF-8; the bytes look like GB18030/GBK"),
    (b"\x81\x30\xff\x30" * 8, "gbk",
     "declared gbk; tried UTF-8 (byte 0 is not valid UTF-8) and GB18030 (byte"),
])
def test_every_decoding_message_names_the_encoding_tried_and_the_one_guessed(data, declared, expected):
    from lake.files import InputError, decode

    with pytest.raises(InputError) as e:
        decode(data, declared, "f.csv")
    assert str(e.value).startswith(f"f.csv: {expected}"), str(e.value)
    assert "\n" not in str(e.value)


def test_a_contract_may_declare_utf16():
    from lake.files import decode

    text = "姓名,号\n张三,1\n"
    assert decode(text.encode("utf-16"), "utf-16", "f.csv") == (text, "utf-16-le")
    assert decode(text.encode("utf-16-be"), "utf-16-be", "f.csv") == (text, "utf-16-be")


def test_cut_marks_what_it_cut():
    from lake.hostile import cut

    assert cut("x" * 200) == "x" * 200
    assert cut("x" * 10_485_760) == "x" * 200 + "…[cut: 10,485,760 characters]"


# ------------------------------------------------------------------ through `lake check` (Spark)

def test_a_utf16_file_sent_to_a_utf8_source(spark, tmp_path):
    sc = contract("samr_enterprises")
    f = write_csv(tmp_path / "ent.csv", sc, [valid_row(sc, 1)], encoding="utf-16")
    r = runner.invoke(app, ["check", "--source", "samr_enterprises", str(f), "--root", str(tmp_path / "lake")])
    assert r.exit_code == 2, r.output
    msg = " ".join(r.output.split())
    assert "ent.csv: declared utf-8; not read as UTF-8: the bytes look like UTF-16-LE (byte-order mark FF FE)" in msg
    assert "GBK" not in msg and "Traceback" not in r.output


def test_a_10_mb_field_is_cut_in_every_echo(spark, tmp_path):
    """A 10 MB value in an identifier column: `lake check --json` stays small; the finding's value and
    the quarantine reason are cut with a marker; the row itself is kept whole in quarantine."""
    sc = contract("samr_enterprises")
    rows = [valid_row(sc, i) for i in range(1, 4)]
    rows[1]["credit_code"] = "9" * 10_485_760
    f = write_csv(tmp_path / "big.csv", sc, rows)
    r, doc = check_json(f, "samr_enterprises", tmp_path / "lake")
    assert r.exit_code == 1, r.output[:2000]
    assert len(r.stdout) < 20_000, len(r.stdout)
    [p] = [p for p in doc["problems"] if p["field"] == "credit_code"]
    assert p["row"] == 3 and p["value"] == "9" * 200 + "…[cut: 10,485,760 characters]"
    assert doc["would_quarantine"] == 1 and doc["would_land"] == 2


def test_control_characters_are_quarantined_by_default(spark, tmp_path):
    sc = contract("samr_enterprises")
    rows = [valid_row(sc, i) for i in range(1, 4)]
    rows[0]["name"] = "大兴\x00科技有限公司"
    rows[2]["address"] = "黄村\x1b[31m镇"
    f = write_csv(tmp_path / "nul.csv", sc, rows)
    r, doc = check_json(f, "samr_enterprises", tmp_path / "lake")
    assert r.exit_code == 1, r.output
    assert doc["by_defect_type"].get("control_characters") == 2
    assert doc["would_quarantine"] == 2 and doc["would_land"] == 1
    vals = {p["row"]: p for p in doc["problems"] if p["defect_type"] == "control_characters"}
    assert vals[2]["value"] == "大兴␀科技有限公司" and vals[2]["severity"] == "error" and vals[2]["field"] == "name"
    assert vals[4]["value"] == "黄村␛[31m镇" and vals[4]["quarantined"]


def test_control_characters_cleaned_when_the_contract_says_so(spark, tmp_path):
    """``control_characters: clean``: a warning, the characters removed, the row landed."""
    from jobs.landing import ingest
    from lake import io

    cdir = tmp_path / "contracts"
    shutil.copytree(REPO / "contracts", cdir)
    y = cdir / "sources" / "samr_enterprises.yaml"
    y.write_text(y.read_text(encoding="utf-8") + "control_characters: clean\n", encoding="utf-8")
    sc = contract("samr_enterprises", str(cdir))
    assert sc.control_characters == "clean"
    rows = [valid_row(sc, i) for i in range(1, 3)]
    rows[0]["name"] = "大兴\x00科技\x07有限公司"
    f = write_csv(tmp_path / "inbox" / "samr_enterprises" / "nul.csv", sc, rows)
    r, doc = check_json(f, "samr_enterprises", tmp_path / "lake", env={"LAKE_CONTRACTS": str(cdir)})
    assert r.exit_code == 0, r.output
    [p] = [p for p in doc["problems"] if p["defect_type"] == "control_characters"]
    assert p["severity"] == "warning" and p["value"] == "大兴␀科技␇有限公司" and doc["would_land"] == 2
    s = Settings.from_env(root=str(tmp_path / "lake"), inbox=str(tmp_path / "inbox"), contracts_dir=str(cdir))
    ingest.run(s, "samr_enterprises")
    names = {r["record_id"]: r["name"] for r in io.read(spark, io.table_path(s, "raw", "samr_enterprises")).collect()}
    assert names["R0001"] == "大兴科技有限公司"
    # a wrong setting is an error naming the file and the key
    y.write_text(y.read_text(encoding="utf-8").replace("control_characters: clean", "control_characters: drop"),
                 encoding="utf-8")
    with pytest.raises(contracts.ContractError,
                       match=r"samr_enterprises.yaml: control_characters: Input should be 'quarantine' or 'clean' \(got 'drop'\)"):
        contracts.parse_source(y)


def test_a_bad_json_line_reports_its_real_problem(spark, tmp_path):
    sc = contract("nhc_vital_events")
    good = {c: v for c, v in valid_row(sc, 1).items()}
    lines = [json.dumps(good, ensure_ascii=False), '{"record_id": "R0002", "id_number": "1101"  "name": "x"}',
             "[1, 2]", json.dumps({**good, "record_id": "R0004", "shoe_size": "42"}, ensure_ascii=False)]
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r, doc = check_json(f, "nhc_vital_events", tmp_path / "lake")
    assert r.exit_code == 1, r.output
    msgs = {p["row"]: p["message"] for p in doc["problems"] if p["rule"] == "parse.field_count"}
    assert msgs[2] == "not valid JSON: Expecting ',' delimiter at column 45", msgs  # the second name's quote
    assert msgs[3] == "not a JSON object but a JSON list"
    assert msgs[4].startswith("unknown key(s) ['shoe_size']")
    assert not any("found -1" in m for m in msgs.values())


# ------------------------------------------------------------------ empty deliveries, failed parses (Spark)

@pytest.mark.parametrize("content, how", [
    (None, "a header and no data rows"), (b"", "an empty file, 0 bytes"), (b"\n\n  \n", "only blank lines"),
])
def test_a_file_without_data_rows_is_a_finding_for_its_department(spark, tmp_path, content, how):
    from jobs.landing import ingest
    from lake import io

    sc = contract("samr_enterprises")
    s = Settings.from_env(root=str(tmp_path / "lake"), shuffle_partitions=2)
    f = Path(s.inbox) / "samr_enterprises" / "empty_20261101.csv"
    if content is None:
        write_csv(f, sc, [])
    else:
        f.parent.mkdir(parents=True)
        f.write_bytes(content)
    r, doc = check_json(f, "samr_enterprises", tmp_path / "lake")
    assert r.exit_code == 1, r.output
    assert doc["rows_read"] == 0 and doc["by_defect_type"] == {"delivered_empty": 1}
    [res] = ingest.run(s, "samr_enterprises")
    assert res["rows_read"] == 0 and res["findings"] == 1 and not res["skipped"]
    [m] = io.read(spark, io.table_path(s, "landing", "_manifest")).collect()
    assert m["rows_read"] == 0 and m["file_name"] == f.name
    [found] = io.read(spark, io.table_path(s, "quality", "findings")).collect()
    assert (found["defect_type"], found["department"], found["stage"], found["run_id"]) == (
        "delivered_empty", sc.department, "ingest", res["batch_id"])
    assert found["message"] == f"the file has no data rows ({how}): nothing was delivered"
    # the department report counts it (reports take the ingest findings of each source's newest batch)
    from jobs.governance import reports

    cur = reports.current_findings(spark, s, {"batches": {"samr_enterprises": res["batch_id"]}, "build_runs": [],
                                              "timeliness": "-"}).collect()
    assert [c["defect_type"] for c in cur] == ["delivered_empty"]


def test_a_failed_parse_leaves_no_staging_file(spark, tmp_path):
    from jobs.landing import ingest
    from lake.files import InputError

    sc = contract("samr_enterprises")
    rows = [valid_row(sc, i) for i in range(1, 3)]
    rows[1]["address"] = '"' + "x" * 200_000  # a quoted field over the CSV field limit: the parse fails half-way
    s = Settings.from_env(root=str(tmp_path / "lake"), shuffle_partitions=2)
    write_csv(Path(s.inbox) / "samr_enterprises" / "big.csv", sc, rows)
    with pytest.raises(InputError, match=r"big.csv: line \d+: field larger than field limit"):
        ingest.run(s, "samr_enterprises")
    staging = Path(s.root) / "_staging" / "ingest"
    assert not staging.exists() or not list(staging.iterdir())
    assert not (Path(s.root) / "landing" / "_manifest").exists()
