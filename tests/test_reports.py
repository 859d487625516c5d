"""Department quality reports, the department score, timeliness and the timeliness gate.

Runs on a small lake built here from hand-made files (written from the contracts, see test_check.py):
psb_household delivers an old and a new file (the new one has one ID checksum error and one bad
phone), samr_enterprises one file with a bad credit code, nobody else delivers. Tables are read back
with deltalake (no JVM), as a department would.
"""
from __future__ import annotations

import csv
import datetime as dt
import io as pyio
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable
from typer.testing import CliRunner

from lake import contracts as contracts_mod
from lake import policy as policy_mod
from lake.contracts import ContractError
from lake.settings import Settings
from test_check import bad_checksum, id_column, source_contract, valid_row, write_csv

FAR_FUTURE = "2099-01-01"
runner = CliRunner()


def rows_of(root: str, rel: str) -> list[dict]:
    return DeltaTable(f"{root}/{rel}").to_pyarrow_table().to_pylist()


def version_of(root: str, rel: str) -> int:
    return DeltaTable(f"{root}/{rel}").version()


@pytest.fixture(scope="module")
def small_lake(settings, spark, tmp_path_factory):
    from jobs.governance import reports, timeliness
    from jobs.landing import ingest

    tmp = tmp_path_factory.mktemp("reports")
    s = settings.with_root(str(tmp / "lake"))
    psb = source_contract("psb_household", s.contracts_dir)
    samr = source_contract("samr_enterprises", s.contracts_dir)

    old = [valid_row(psb, i) for i in range(1, 4)]
    old[0][id_column(psb)] = bad_checksum(old[0][id_column(psb)])
    new = [valid_row(psb, i) for i in range(1, 7)]
    new[1][id_column(psb)] = bad_checksum(new[1][id_column(psb)])  # error
    new[3][next(c.name for c in psb.columns if "cn_phone" in c.checks)] = "12345"  # warning
    ent = [valid_row(samr, i) for i in range(1, 5)]
    code = next(c.name for c in samr.columns if "cn_uscc" in c.checks)
    ent[2][code] = ent[2][code][:-1] + ("0" if ent[2][code][-1] != "0" else "1")  # error

    results = [
        ingest.ingest_file(s, "psb_household", write_csv(tmp / "psb_old.csv", psb, old), spark),
        ingest.ingest_file(s, "psb_household", write_csv(tmp / "psb_new.csv", psb, new), spark),
        ingest.ingest_file(s, "samr_enterprises", write_csv(tmp / "samr.csv", samr, ent), spark),
    ]
    # "today" is the day the newest psb file was landed, not the clock at import: a run that crosses
    # midnight between collecting this module and landing the files must still see an age of 0 days
    today = str(timeliness.last_deliveries(spark, s)["psb_household"]["ingested_at"])[:10]
    tl = timeliness.run(s, today, spark)
    rep = reports.run(s, today, spark)
    return {"settings": s, "ingest": results, "timeliness": tl, "report": rep, "tmp": tmp, "today": today}


def current_findings_direct(root: str, as_of: str) -> list[dict]:
    """Straight from quality/findings: the newest batch per source, plus the run's timeliness findings."""
    manifest = rows_of(root, "landing/_manifest")
    newest = {}
    for m in sorted(manifest, key=lambda m: m["ingested_at"]):
        newest[m["source"]] = m["batch_id"]
    return [f for f in rows_of(root, "quality/findings")
            if f["run_id"] in newest.values() or f["run_id"] == f"timeliness-{as_of}"]


# ------------------------------------------------------------------ score (hand-computed)

def test_score_formula_on_a_hand_example():
    from jobs.governance.reports import score

    p = policy_mod.Policy(weights={"error": 1.0, "warning": 0.3}, stale_penalty=10)
    # 200 rows, 4 errors + 10 warnings: weighted 4 + 3 = 7; 100 x (1 - 7/200) = 96.5; one stale source: 86.5
    assert score(200, {"error": 4, "warning": 10}, 1, p) == (86.5, 7.0)
    assert score(200, {"error": 4, "warning": 10}, 0, p) == (96.5, 7.0)
    assert score(10, {"error": 20}, 0, p)[0] == 0.0          # more weighted findings than rows: floor at 0
    assert score(0, {}, 2, p)[0] == 80.0                      # nothing delivered: only the penalty
    assert score(6, {"error": 1, "warning": 1}, 0, p)[0] == 78.33  # 100 x (1 - 1.3/6)
    assert score(6, {"error": 1}, 12, p)[0] == 0.0            # never below 0


# ------------------------------------------------------------------ reports on the small lake

def test_every_department_gets_a_report(small_lake):
    s = small_lake["settings"]
    rep = small_lake["report"]
    c = contracts_mod.load(s.contracts_dir)
    codes = {sc.department_code for sc in c.sources.values()}
    assert {d["department_code"] for d in rep["departments"]} == codes
    for code in codes:
        folder = Path(s.root, "reports", rep["run_id"], code)
        assert (folder / "problems.csv").is_file() and (folder / "index.html").is_file()
        page = (folder / "index.html").read_text(encoding="utf-8")
        assert "problems.csv" in page and "Trend" in page
    index = Path(s.root, "reports", "index.html").read_text(encoding="utf-8")
    for sc in c.sources.values():
        assert sc.department in index
    scores = rows_of(s.root, "quality/department_scores")
    assert {r["department_code"] for r in scores if r["run_id"] == rep["run_id"]} == codes


def test_counts_equal_a_direct_count_of_findings(small_lake):
    s = small_lake["settings"]
    rid = small_lake["report"]["run_id"]
    direct = current_findings_direct(s.root, small_lake["today"])
    quality = [q for q in rows_of(s.root, "quality/department_quality") if q["run_id"] == rid]
    c = contracts_mod.load(s.contracts_dir)
    for dept in {sc.department for sc in c.sources.values()}:
        assert sum(q["findings"] for q in quality if q["department"] == dept) == \
            sum(1 for f in direct if f["department"] == dept), dept
    # the old psb file's ID error is not counted: only the newest batch is current
    old_batch = small_lake["ingest"][0].batch_id
    assert any(f["run_id"] == old_batch for f in rows_of(s.root, "quality/findings"))
    psb = {(q["defect_type"], q["field"]): q for q in quality if q["source"] == "psb_household"}
    assert psb[("id_checksum", "id_number")]["findings"] == 1
    assert psb[("id_checksum", "id_number")]["rows"] == 6
    assert psb[("id_checksum", "id_number")]["rate"] == pytest.approx(1 / 6, abs=1e-6)
    assert psb[("phone_format", "phone")]["findings"] == 1


def test_problems_csv_is_the_departments_findings_in_utf8_with_bom(small_lake):
    s = small_lake["settings"]
    rid = small_lake["report"]["run_id"]
    direct = current_findings_direct(s.root, small_lake["today"])
    c = contracts_mod.load(s.contracts_dir)
    for code in {sc.department_code for sc in c.sources.values()}:
        dept = next(sc.department for sc in c.sources.values() if sc.department_code == code)
        data = Path(s.root, "reports", rid, code, "problems.csv").read_bytes()
        assert data.startswith(b"\xef\xbb\xbf")
        rows = list(csv.DictReader(pyio.StringIO(data.decode("utf-8-sig"))))
        assert len(rows) == sum(1 for f in direct if f["department"] == dept), code
    psb_code = source_contract("psb_household").department_code
    rows = list(csv.DictReader(pyio.StringIO(
        Path(s.root, "reports", rid, psb_code, "problems.csv").read_bytes().decode("utf-8-sig"))))
    bad = [r for r in rows if r["defect_type"] == "id_checksum"]
    assert len(bad) == 1 and bad[0]["record_key"] == "R0002" and bad[0]["row"] == "3"
    assert bad[0]["file_sha256"] == small_lake["ingest"][1].sha256 and bad[0]["source"] == "psb_household"


def _idle_sources(s, delivered: str) -> int:
    """The sources of ``delivered``'s department other than ``delivered`` (they deliver nothing here)."""
    dept = source_contract(delivered).department_code
    return sum(1 for sc in contracts_mod.load(s.contracts_dir).sources.values()
               if sc.department_code == dept and sc.source != delivered)


def test_scores_follow_the_formula(small_lake):
    s = small_lake["settings"]
    rid = small_lake["report"]["run_id"]
    scores = {r["department_code"]: r for r in rows_of(s.root, "quality/department_scores") if r["run_id"] == rid}
    psb = scores[source_contract("psb_household").department_code]
    # the department's other sources (public security also delivers the door plates) sent nothing: stale
    psb_idle = _idle_sources(s, "psb_household")
    assert psb_idle >= 1
    assert (psb["rows"], psb["errors"], psb["warnings"], psb["stale_sources"]) == (6, 1, 1, psb_idle)
    assert psb["score"] == round(100 * (1 - (1 + 0.3) / 6) - 10 * psb_idle, 2)  # 78.33 - 10 per idle source
    samr = scores[source_contract("samr_enterprises").department_code]
    samr_idle = _idle_sources(s, "samr_enterprises")
    assert (samr["rows"], samr["errors"], samr["stale_sources"], samr["score"]) == (4, 1, samr_idle, 75.0 - 10 * samr_idle)
    # civil affairs delivered nothing: every one of its sources is stale, 10 points each
    mca = [sc for sc in contracts_mod.load(s.contracts_dir).sources.values()
           if sc.department_code == source_contract("mca_residents").department_code]
    m = scores[mca[0].department_code]
    assert m["rows"] == 0 and m["stale_sources"] == len(mca) and m["score"] == 100 - 10 * len(mca)


def test_rerunning_the_report_changes_nothing(small_lake, spark):
    from jobs.governance import reports, timeliness

    s = small_lake["settings"]
    tables = ["quality/findings", "quality/department_quality", "quality/department_scores"]
    before = {t: version_of(s.root, t) for t in tables}
    files = {p: p.read_bytes() for p in Path(s.root, "reports").rglob("*") if p.is_file()}
    assert timeliness.run(s, small_lake["today"], spark)["findings_written"] is False
    again = reports.run(s, small_lake["today"], spark)
    assert again["run_id"] == small_lake["report"]["run_id"]
    assert again["tables_written"] == {"department_quality": False, "department_scores": False}
    assert again["files_written"] == 0
    assert {t: version_of(s.root, t) for t in tables} == before
    assert {p: p.read_bytes() for p in Path(s.root, "reports").rglob("*") if p.is_file()} == files


def test_lake_report_prints_the_scores(small_lake):
    from lake.cli import app

    s = small_lake["settings"]
    r = runner.invoke(app, ["report", "--root", s.root])
    assert r.exit_code == 0, r.output
    psb = f"{100 * (1 - 1.3 / 6) - 10 * _idle_sources(s, 'psb_household'):.1f}"
    samr = f"{75.0 - 10 * _idle_sources(s, 'samr_enterprises'):.1f}"
    assert small_lake["report"]["run_id"] in r.stdout
    assert psb in r.stdout and samr in r.stdout
    r = runner.invoke(app, ["report", "--run", "nope", "--root", s.root])
    assert r.exit_code == 1 and "unknown report run 'nope'" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["report", "--root", str(small_lake["tmp"] / "empty")])
    assert r.exit_code == 1 and "no department reports" in r.output


# ------------------------------------------------------------------ timeliness

def test_a_source_older_than_its_cycle_is_stale(small_lake, spark):
    from jobs.governance import timeliness

    s = small_lake["settings"]
    today = {d["source"]: d for d in small_lake["timeliness"]["sources"]}
    assert not today["psb_household"]["stale"] and today["psb_household"]["age_days"] == 0
    assert today["mca_residents"]["stale"] and today["mca_residents"]["last_delivery"] is None
    later = timeliness.run(s, FAR_FUTURE, spark)
    stale = {d["source"]: d for d in later["stale"]}
    assert "psb_household" in stale and "samr_enterprises" in stale
    assert stale["psb_household"]["age_days"] > stale["psb_household"]["allowed_days"]
    found = [f for f in rows_of(s.root, "quality/findings") if f["run_id"] == f"timeliness-{FAR_FUTURE}"]
    psb = [f for f in found if f["source"] == "psb_household"]
    assert len(psb) == 1
    f = psb[0]
    assert (f["stage"], f["rule"], f["defect_type"], f["record_key"]) == ("timeliness", "timeliness.cycle", "stale_source", None)
    assert f["_batch_id"] == small_lake["ingest"][1].batch_id and f["department"] == "北京市公安局大兴分局"
    assert len(found) == len(contracts_mod.load(s.contracts_dir).sources)  # every source is stale in 2099


def test_assess_uses_cycle_plus_grace_days(small_lake):
    from jobs.governance import timeliness

    c = contracts_mod.load(small_lake["settings"].contracts_dir)
    landed = dt.datetime(2026, 1, 1, 8, 0)
    deliveries = {"psb_household": {"ingested_at": landed, "batch_id": "b", "sha256": "x", "file_name": "f"}}
    p = policy_mod.Policy(grace_days=2)
    cycle = contracts_mod.UPDATE_CYCLES[c.source("psb_household").update_cycle]

    def stale(as_of):
        return {d.source: d for d in timeliness.assess(c, deliveries, as_of, p)}["psb_household"].stale

    assert not stale((landed.date() + dt.timedelta(days=cycle + 2)).isoformat())
    assert stale((landed.date() + dt.timedelta(days=cycle + 3)).isoformat())
    assert not stale("2025-12-01")  # a delivery after as_of is fresh


def blocking_settings(s: Settings, tmp: Path, block: bool) -> Settings:
    cdir = tmp / f"contracts_block_{block}"
    if not cdir.exists():
        shutil.copytree(s.contracts_dir, cdir)
        (cdir / "policy.yaml").write_text(yaml.safe_dump(
            {"timeliness": {"grace_days": 3, "block_publication": block}}), encoding="utf-8")
    return replace(s, contracts_dir=str(cdir))


def test_stale_sources_block_the_gate_when_the_policy_says_so(small_lake, spark):
    from quality.gates import StaleSources
    from quality import gates

    s = small_lake["settings"]
    blocking = blocking_settings(s, small_lake["tmp"], True)
    c = contracts_mod.load(blocking.contracts_dir)
    candidate = spark.createDataFrame([("x",)], "id_number string")
    for table in ("base.population", "topic.population_by_town_age_band"):
        with pytest.raises(gates.GateFailed) as e:
            gates.publish(spark, blocking, c.table(table), candidate, {"as_of": FAR_FUTURE})
        assert isinstance(e.value, StaleSources)
        msg = str(e.value)
        assert table in msg and "psb_household" in msg and "not published" in msg
        assert f"last delivery {small_lake['today']}" in msg
    assert not Path(s.root, "base", "population").exists()
    # the default policy only reports: the gate does not look at timeliness
    gates.timeliness_gate(spark, s, c.table("base.population"), FAR_FUTURE)
    gates.timeliness_gate(spark, blocking_settings(s, small_lake["tmp"], False), c.table("base.population"), FAR_FUTURE)


# ------------------------------------------------------------------ policy file

def test_policy_file_is_validated_and_names_the_bad_key(tmp_path):
    assert policy_mod.load(Settings().contracts_dir).blocking_severities == ("error",)
    assert policy_mod.load(str(tmp_path)) == policy_mod.Policy()  # no file: defaults
    for text, key in [
        ("timeliness: {grace_day: 3}\n", "timeliness.grace_day"),
        ("timeliness: {grace_days: three}\n", "timeliness.grace_days"),
        ("timeliness: {block_publication: 1}\n", "timeliness.block_publication"),
        ("check: {blocking_severities: [fatal]}\n", "check.blocking_severities"),
        ("score: {weights: {info: 1}}\n", "score.weights.info"),
        ("publish: {}\n", "publish"),
    ]:
        (tmp_path / "policy.yaml").write_text(text, encoding="utf-8")
        with pytest.raises(ContractError) as e:
            policy_mod.load(str(tmp_path))
        assert key in str(e.value) and "policy.yaml" in str(e.value), text
