"""The CLI gives clear messages for user mistakes, never a stack trace."""
from __future__ import annotations

from typer.testing import CliRunner

from lake.cli import app

runner = CliRunner()


def test_missing_file_is_a_one_line_error(settings, spark, tmp_path):
    r = runner.invoke(app, ["ingest", "--source", "psb_household", str(tmp_path / "nope.csv"), "--root", settings.root])
    assert r.exit_code == 1
    assert "no such file" in r.output and "Traceback" not in r.output


def test_unknown_source_names_the_known_ones(settings, spark, tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n", encoding="utf-8")
    r = runner.invoke(app, ["ingest", "--source", "police", str(f), "--root", settings.root])
    assert r.exit_code == 1
    assert "unknown source 'police'" in r.output and "psb_household" in r.output


def test_wrong_header_names_the_file_and_the_columns(settings, spark, tmp_path):
    f = tmp_path / "psb_bad.csv"
    f.write_text("record_id,name\nHJ1,张三\n", encoding="utf-8")
    r = runner.invoke(app, ["ingest", "--source", "psb_household", str(f), "--root", str(tmp_path / "lake")])
    assert r.exit_code == 1
    assert "psb_bad.csv" in r.output and "id_number" in r.output and "Traceback" not in r.output


def test_bad_as_of_is_rejected(settings):
    r = runner.invoke(app, ["build", "--as-of", "2026-13-01", "--root", settings.root])
    assert r.exit_code != 0 and "YYYY-MM-DD" in r.output
