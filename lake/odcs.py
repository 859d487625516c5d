"""Every table contract as an Open Data Contract Standard (ODCS) v3 document, for tools that read ODCS
(datacontract-cli, catalogues). ``lake contracts export --format odcs --out DIR`` writes one YAML file
per table; ``validate`` checks a document against the ODCS JSON Schema shipped with the
``open-data-contract-standard`` package (the standard's own schema, not a copy of ours).

What ODCS has a field for maps to it: name, description, domain, the schema (one object per table,
its columns as properties with logical and physical types, primary key, required, classification by
grade), the quality checks (GX expectations as ``custom`` checks for the ``great-expectations`` engine,
keys as ``library`` checks), the share grants as roles. What it has none for stays in
``customProperties`` under its own name: one authority and a fallback order per column (一数一源),
cross rules, the flow (``builtBy``, ``upstream``, ``schedule``), share and open types.
"""
from __future__ import annotations

import json
from functools import lru_cache

from lake.contracts import TableContract
from lake.reference import DISTRICT

API_VERSION = "v3.1.0"
LOGICAL = {"string": "string", "date": "date", "timestamp": "timestamp", "int": "integer", "long": "integer",
           "double": "number", "boolean": "boolean"}
GX = {"not_null": "expect_column_values_to_not_be_null", "unique": "expect_column_values_to_be_unique",
      "compound_unique": "expect_compound_columns_to_be_unique", "regex": "expect_column_values_to_match_regex",
      "not_regex": "expect_column_values_to_not_match_regex", "in_set": "expect_column_values_to_be_in_set",
      "between": "expect_column_values_to_be_between", "row_count_between": "expect_table_row_count_to_be_between"}
GRADE_CLASS = {1: "public", 2: "internal", 3: "confidential", 4: "restricted"}  # DB11/T 1918 grades 1-4


def _custom(**kw) -> list[dict]:
    return [{"property": k, "value": v} for k, v in kw.items() if v not in (None, "", [], ())]


def _check(e: dict) -> dict:
    kwargs = {k: v for k, v in e.items() if k not in ("type", "when")}
    if "values" in kwargs:
        kwargs["value_set"] = kwargs.pop("values")
    if "min" in kwargs or "max" in kwargs:
        kwargs["min_value"], kwargs["max_value"] = kwargs.pop("min", None), kwargs.pop("max", None)
    if "when" in e:
        kwargs["row_condition"] = f"{e['when']['column']} == {json.dumps(e['when']['equals'])}"
    return {"type": "custom", "engine": "great-expectations",
            "implementation": {"expectation_type": GX[e["type"]], "kwargs": kwargs}}


def to_odcs(tc: TableContract) -> dict:
    """The ODCS v3 document of a table contract (plain data, ready for YAML or JSON)."""
    column_checks: dict[str, list] = {}
    table_checks = [{"type": "library", "metric": "duplicateValues", "mustBe": 0,
                     "arguments": {"properties": list(tc.key)}, "description": "the key is unique"}]
    for e in tc.expectations:
        if e.get("column"):
            column_checks.setdefault(e["column"], []).append(_check(e))
        else:
            table_checks.append(_check(e))
    props = []
    for c in tc.columns:
        prop = {
            "name": c.name, "logicalType": LOGICAL.get(c.type, "number" if c.type.startswith("decimal") else "string"),
            "physicalType": c.type, "description": c.title or c.name,
            "classification": GRADE_CLASS[c.grade or (4 if c.pii else tc.grade)],
        }
        if c.name in tc.key:
            prop.update(primaryKey=True, primaryKeyPosition=tc.key.index(c.name) + 1, required=True)
        if c.name == tc.partition_by:
            prop.update(partitioned=True, partitionKeyPosition=1)
        if column_checks.get(c.name):
            prop["quality"] = column_checks[c.name]
        custom = _custom(authority=c.authority, fallback=list(c.fallback), sourceColumns=c.sources or None,
                         derive=c.derive, crossCheck=c.cross_check or None, pii=c.pii or None, grade=c.grade)
        if custom:
            prop["customProperties"] = custom
        props.append(prop)
    doc = {
        "apiVersion": API_VERSION, "kind": "DataContract", "id": f"daxing-lake-{tc.table.replace('.', '-')}",
        "name": tc.title, "version": "1.0.0", "status": "active", "domain": tc.domain, "tenant": DISTRICT.bureau,
        "description": {"purpose": tc.description or tc.title, "usage": tc.grain,
                        **({"limitations": tc.share_condition} if tc.share_condition else {})},
        "schema": [{"name": tc.name, "physicalName": f"{tc.zone}/{tc.name}", "physicalType": "table",
                    "logicalType": "object", "description": tc.title, "dataGranularityDescription": tc.grain,
                    "properties": props, "quality": table_checks}],
        "roles": [{"role": d, "access": "read", "description": "share grant (有条件共享)"} for d in tc.share_grants],
        "customProperties": _custom(
            table=tc.table, owner=tc.owner, grade=tc.grade, shareType=tc.share_type, openType=tc.open_type,
            updateCycle=tc.update_cycle, builtBy=tc.built_by, writtenBy=list(tc.written_by), upstream=list(tc.upstream),
            requires=list(tc.requires), schedule=tc.schedule, crossRules=list(tc.cross_rules),
            openDataset=tc.open_dataset.get("id") if tc.open_dataset else None, gate=tc.gate),
    }
    if not doc["roles"]:
        del doc["roles"]
    return doc


@lru_cache(maxsize=1)
def _validator():
    import importlib.resources

    import jsonschema

    schema = json.loads(importlib.resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate(doc: dict) -> list[str]:
    """The ODCS JSON Schema's complaints about ``doc`` (empty when it conforms)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in _validator().iter_errors(doc)]
