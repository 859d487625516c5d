"""The contracts are the registry: strict validation (a misspelt key is an error, never a default),
reference data declared once, the jobs, their order and their DAGs derived from the contracts, the
ODCS export, and a runtime without import cycles that never imports the sample-data generator."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from lake import contracts as contracts_mod
from lake import odcs, reference, registry
from lake.contracts import ContractError

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = REPO / "contracts"


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, dst)
    return dst


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _col(data: dict, name: str) -> dict:
    return next(c for c in data["columns"] if c["name"] == name)


# ----------------------------------------------------------------------------- strict contracts

@pytest.mark.parametrize("file, change, words", [
    ("tables/base_population.yaml", lambda d: _col(d, "id_number").update(pi=True),
     ["columns[1] (id_number).pi", "unknown key"]),
    ("tables/base_population.yaml", lambda d: d.update(share_grant=d.pop("share_grants")),
     ["share_grant", "unknown key"]),
    ("tables/base_population.yaml", lambda d: d.update(grade=7), ["grade", "less than or equal to 4"]),
    ("tables/topic_flood_points.yaml", lambda d: _col(d, "lon").update(type="lng"), ["columns", "(lon).type", "'lng'"]),
    ("sources/psb_household.yaml", lambda d: _col(d, "phone").update(pii="yes please"), ["(phone).pii"]),
    ("tables/base_population.yaml", lambda d: d.update(share_type="sometimes"), ["share_type", "'sometimes'"]),
    ("tables/base_population.yaml", lambda d: d.pop("built_by"), ["built_by"]),
    ("tables/topic_population_by_town_age_band.yaml", lambda d: d.update(upstream=["base.populaton"]),
     ["upstream 'base.populaton'"]),
    ("tables/base_population.yaml", lambda d: d.update(schedule="daily at six"), ["cron expression"]),
    ("tables/topic_air_quality_exceedance.yaml",
     lambda d: d["expectations"].append({"type": "in_set", "column": "pollutant", "values_from": "sensing.metricz"}),
     ["values_from is not a reference set", "sensing.metrics"]),
    ("tables/base_admin_boundary.yaml",
     lambda d: d["expectations"].append({"type": "regex", "column": "code", "regex": "^${distrct}$"}),
     ["unknown substitution ${distrct}", "${district}"]),
    ("tables/base_population.yaml", lambda d: d["expectations"].append({"type": "not_nul", "column": "name"}),
     ["expectations[", "not_nul"]),
    ("tables/base_population.yaml", lambda d: d["expectations"].append({"type": "not_null", "column": "nmae"}),
     ["names column 'nmae'"]),
])
def test_a_wrong_or_misspelt_key_is_an_error_naming_file_and_key(tmp_path, file, change, words):
    folder = _copy(tmp_path)
    _edit(folder / file, change)
    with pytest.raises(ContractError) as e:
        contracts_mod.load(str(folder))
    msg = str(e.value)
    assert Path(file).name in msg
    for w in words:
        assert w in msg, (w, msg)


def test_a_misspelt_privacy_key_cannot_open_personal_data(tmp_path):
    """With `pi: true` silently ignored, a table with an ID column could be opened; now it cannot load."""
    folder = _copy(tmp_path)

    def open_it(d):
        d["open_type"] = "unconditional"
        d["open_dataset"] = {"id": "people", "title": "人口", "description": "所有人", "theme": ["SOCI"],
                             "contact_point": {"name": "大数据局", "email": "open@example.org"},
                             "chart": {"x": "town", "agg": "count"}}
        _col(d, "id_number").pop("pii")
        _col(d, "id_number")["pi"] = True

    _edit(folder / "tables" / "base_population.yaml", open_it)
    with pytest.raises(ContractError, match="pi: unknown key"):
        contracts_mod.load(str(folder))
    _edit(folder / "tables" / "base_population.yaml", lambda d: _col(d, "id_number").update(pii=_col(d, "id_number").pop("pi")))
    with pytest.raises(ContractError, match="personal columns cannot be opened"):
        contracts_mod.load(str(folder))


def test_reference_data_is_declared_once_and_expanded_into_the_contracts():
    c = contracts_mod.load(str(CONTRACTS))
    ref = reference.load()
    exceed = {e.get("column"): e for e in c.table("topic.air_quality_exceedance").expectations}
    assert exceed["limit_value"]["values"] == [75.0, 150.0, 500.0, 200.0, 80.0, 10.0, 4.0, 160.0]
    assert exceed["pollutant"]["values"] == list(ref.air_quality.gb3095_grade_ii)
    assert exceed["town_code"]["regex"] == f"^{ref.district.code}[0-9]{{3}}$"
    assert c.source("iot_devices").column("device_type").allowed == tuple(ref.sensing.device_types)
    # no contract writes the district code or a GB 3095 limit by hand
    for p in CONTRACTS.rglob("*.yaml"):
        if p.name == "reference.yaml":
            continue
        text = "\n".join(line.split("#")[0] for line in p.read_text(encoding="utf-8").splitlines())
        assert "'^110115" not in text and "160.0" not in text, p


def test_a_broken_reference_file_names_its_key(tmp_path):
    data = yaml.safe_load(reference.PATH.read_text(encoding="utf-8"))
    data["sensing"]["device_types"]["01"]["metrics"].append("pm1")
    bad = tmp_path / "reference.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(reference.ReferenceError, match="device type 01: metric 'pm1' is not declared"):
        reference.parse(bad)


# ----------------------------------------------------------------------------- the registry

def test_jobs_and_their_order_come_from_the_contracts():
    reg = registry.load(str(CONTRACTS))
    registry.check_modules(reg)
    order = [j.name for j in reg.order()]
    for before, after in [("base.population", "base.standard_address"), ("base.admin_boundary", "base.iot_device"),
                          ("base.standard_address", "base.poi"), ("base.iot_device", "base.iot_reading"),
                          ("base.iot_reading", "topic.sensing"), ("base.population", "topic.population")]:
        assert order.index(before) < order.index(after), (before, after)
    assert reg.job_of("topic.flood_points").name == "topic.sensing"
    assert reg.job_of("base.iot_reading").schedule == "30 0 * * *"
    assert reg.sources_of("topic.air_quality_hourly") == ["ghzrzy_boundaries", "iot_devices", "iot_readings_csv",
                                                         "iot_readings_json"]
    assert "lake__build__base__population" in reg.completes("base", "population")


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(built_by="jobs.base.populaton"), ["built_by 'jobs.base.populaton' cannot be imported"]),
    (lambda d: d.update(cross_rules=["death_not_propagatd"]), ["death_not_propagatd", "not implemented by jobs.base.population"]),
    (lambda d: _col(d, "gender").update(derive="gender_from_idd"), ["derive 'gender_from_idd'", "DERIVATIONS"]),
    (lambda d: d.update(built_by="jobs.base.legal_entity"), ["jobs.base.legal_entity.TABLES"]),
])
def test_a_contract_naming_a_job_wrongly_is_caught(tmp_path, change, words):
    folder = _copy(tmp_path)
    _edit(folder / "tables" / "base_population.yaml", change)
    with pytest.raises(ContractError) as e:
        registry.check_modules(registry.build(contracts_mod.load(str(folder))))
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_new_table_needs_a_contract_and_a_job_module_nothing_else(tmp_path, monkeypatch):
    """A contract naming a new module makes a job, placed after its upstream, with its own DAG id."""
    folder = _copy(tmp_path)
    pkg = tmp_path / "extra" / "jobs_extra"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    data = yaml.safe_load((folder / "tables" / "topic_population_by_town_age_band.yaml").read_text(encoding="utf-8"))
    data.update(table="topic.households_by_town", title="分镇街户数", built_by="jobs.topic.households",
                upstream=["base.population"])
    (folder / "tables" / "topic_households_by_town.yaml").write_text(yaml.safe_dump(data, allow_unicode=True),
                                                                      encoding="utf-8")
    reg = registry.build(contracts_mod.load(str(folder)))
    job = reg.job_of("topic.households_by_town")
    assert job.dag_id == "lake__build__topic__households" and job.upstream == ("base.population",)
    order = [j.name for j in reg.order()]
    assert order.index("base.population") < order.index("topic.households")
    with pytest.raises(ContractError, match="jobs.topic.households"):  # the module is the one thing missing
        registry.check_modules(reg)


# ----------------------------------------------------------------------------- ODCS

def test_every_contract_exports_as_valid_odcs(tmp_path):
    from typer.testing import CliRunner

    from lake.cli import app

    res = CliRunner().invoke(app, ["contracts", "export", "--format", "odcs", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    files = sorted(tmp_path.glob("*.odcs.yaml"))
    assert len(files) == len(contracts_mod.load(str(CONTRACTS)).tables)
    doc = yaml.safe_load((tmp_path / "base.population.odcs.yaml").read_text(encoding="utf-8"))
    assert odcs.validate(doc) == []
    props = {p["name"]: p for p in doc["schema"][0]["properties"]}
    assert props["id_number"]["primaryKey"] is True and props["id_number"]["classification"] == "restricted"
    assert {"property": "authority", "value": "psb_household"} in props["name"]["customProperties"]
    custom = {c["property"]: c["value"] for c in doc["customProperties"]}
    assert custom["builtBy"] == "jobs.base.population" and "raw.psb_household" in custom["upstream"]
    # the validator is the standard's schema, and it does reject what is not ODCS
    doc["kind"] = "Contract"
    doc["schema"][0]["properties"][0]["logicalType"] = "text"
    problems = odcs.validate(doc)
    assert any("kind" in p for p in problems) and any("logicalType" in p for p in problems)


# ----------------------------------------------------------------------------- module structure

RUNTIME = ("lake", "jobs", "quality", "catalog", "opendata", "sharing")


def _imports(path: Path, package_root: Path) -> set[str]:
    names = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # imports for type annotations only are not imports at run time
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _graph() -> dict[str, set[str]]:
    modules = {}
    for pkg in (*RUNTIME, "sample"):
        for p in (REPO / pkg).rglob("*.py"):
            rel = p.relative_to(REPO).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            modules[name] = p
    return {m: {i for i in _imports(p, REPO) if i in modules and i != m} for m, p in modules.items()}


def test_no_import_cycles_between_modules():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]) if d in path else f"{m} -> {d}")
            elif not state.get(d):
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])
    assert not cycles, cycles


def test_the_runtime_never_imports_the_sample_data_generators():
    """The jobs and the library run without Faker: only the CLI's generate/demo commands and the truth
    evaluation (sample data only) reach into sample/."""
    graph = _graph()
    offenders = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] in RUNTIME and m != "lake.cli"
                       for d in deps if d.startswith("sample.") and d not in ("sample.evaluate",))
    assert not offenders, offenders
    code = ("import sys, jobs.pipeline, jobs.orchestration, lake.registry, lake.address\n"
            "from lake import registry; [j.load() for j in registry.load('contracts').order()]\n"
            "print(sorted(m for m in sys.modules if m == 'faker' or m.startswith('sample.generate')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- DAGs that wait

def test_a_build_dag_whose_inputs_do_not_exist_skips_instead_of_failing(tmp_path, monkeypatch):
    """On a fresh lake the population DAG skips (no household register yet): a skip, not a failure."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    dag = DagBag(str(REPO / "dags")).get_dag("lake__build__base__population")
    run = dag.test(logical_date=datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert str(run.state).endswith("success")
    [ti] = run.get_task_instances()
    assert str(ti.state).endswith("skipped")
    assert not (tmp_path / "lake" / "base").exists()
