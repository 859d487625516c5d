"""Detection quality against the generator's truth, on the session's tiny lake: the same evaluation
``scripts/evaluate.py`` prints at scale 0.1, with the same thresholds."""
from __future__ import annotations

import csv
import json

from sample import evaluate
from lake import io


def test_every_defect_type_is_detected_with_precision_and_recall_at_least_099(tiny_lake):
    ev = tiny_lake["report"]["evaluation"]
    with open(tiny_lake["inbox"] / "truth" / "defects.csv", encoding="utf-8") as f:
        injected = {r["defect_type"] for r in csv.DictReader(f)}
    assert injected <= set(ev["defects"]), injected - set(ev["defects"])
    assert len(injected) >= 15
    below = {t: (v["precision"], v["recall"], v["missed_examples"], v["false_examples"])
             for t, v in ev["defects"].items() if v["precision"] < 0.99 or v["recall"] < 0.99}
    assert not below, below
    assert ev["passed"] is True


def test_linkage_of_rows_without_an_id_is_measured(tiny_lake):
    lk = tiny_lake["report"]["evaluation"]["linkage"]
    assert lk["rows_without_id"] > 0
    assert lk["linked"] + lk["review"] + lk["unmatched"] == lk["rows_without_id"]
    assert lk["precision"] >= 0.99


def test_evaluation_is_kept_in_the_run_report(tiny_lake):
    s = tiny_lake["settings"]
    kept = json.loads(io.read_bytes(s.path("_reports", "latest.json")))
    assert kept["evaluation"]["defects"] == json.loads(json.dumps(tiny_lake["report"]["evaluation"]["defects"]))


def test_a_missed_defect_lowers_recall(tiny_lake, spark, tmp_path):
    """The evaluation can fail: a truth file with one extra injected defect nobody found."""
    import shutil
    shutil.copytree(tiny_lake["inbox"], tmp_path / "inbox")
    with open(tmp_path / "inbox" / "truth" / "defects.csv", "a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow(["psb_household", "NO-SUCH-RECORD", "name", "whitespace"])
    ev = evaluate.evaluate(spark, tiny_lake["settings"], tmp_path / "inbox")
    assert ev["defects"]["whitespace"]["recall"] < 1.0
    assert ("psb_household", "NO-SUCH-RECORD", "name", "whitespace") in ev["defects"]["whitespace"]["missed_examples"]
