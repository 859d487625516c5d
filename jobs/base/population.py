"""``base.population`` (人口基础库): one golden record per person, fused from four departments.

The household register (公安) is the authority for identity, civil affairs (民政) for marital status
and subsistence allowance, health (卫健) for deaths, human resources and social security (人社) for
employment and insurance (contracts/tables/base_population.yaml). Rows without an ID number are
linked to a person by ``jobs.base.linkage`` first. The golden-record machinery is
``jobs.base.golden``; this module adds what only people have: the derivations from the ID number
and the cross rule ``death_not_propagated``.
"""
from __future__ import annotations

from pyspark.sql import functions as F

from lake import rules
from lake.settings import Settings
from jobs.base.golden import conflict_struct, finding_struct, values_map

TABLE = "base.population"
TABLES = (TABLE, f"{TABLE}_history")  # the history is written by the same build
DERIVATIONS = {
    "gender_from_id": lambda key: rules.gender_from_id(key),
    "birth_date_from_id": lambda key: rules.birth_date_from_id(key),
}

def _rule_death_not_propagated(tc, contracts, has):
    """Health (death certificate) or civil affairs (death date) report a death; the register says 正常."""
    status_src = tc.columns[tc.column_names.index("register_status")].authority
    death = tc.columns[tc.column_names.index("death_date")]
    death_srcs = [s for s in (death.authority, *death.fallback) if has(s)]
    if not has(status_src) or not death_srcs:
        return None
    status = F.col(f"register_status__{status_src}")
    reported = F.coalesce(*[F.col(f"death_date__{s}") for s in death_srcs])
    cond = (status == "正常") & reported.isNotNull()
    sc = contracts.source(status_src)
    finding = finding_struct(
        status_src, sc, F.col(f"_rk__{status_src}"), "register_status", "cross.death_not_propagated",
        "death_not_propagated",
        F.concat(F.lit("a death on "), reported.cast("string"), F.lit(" is reported by "),
                 F.concat_ws("/", *[F.when(F.col(f"death_date__{s}").isNotNull(), F.lit(s)) for s in death_srcs]),
                 F.lit(" but the register entry is still 正常")),
        status, F.col(f"_sha__{status_src}"), F.col(f"_row__{status_src}"), F.col(f"_batch__{status_src}"))
    reporter = F.coalesce(*[F.when(F.col(f"death_date__{s}").isNotNull(), F.lit(s)) for s in death_srcs])
    conflict = conflict_struct(tc.domain, "register_status", "cross.death_not_propagated", reporter,
                         F.concat(F.lit("死亡 "), reported.cast("string")),
                         values_map([(status_src, status)] + [(s, F.col(f"death_date__{s}")) for s in death_srcs]))
    return cond, finding, conflict


CROSS_RULES = {"death_not_propagated": _rule_death_not_propagated}


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    """Build and publish ``base.population`` through its gate."""
    from jobs.base import incremental

    return [incremental.build_table(settings, TABLE, as_of)]
