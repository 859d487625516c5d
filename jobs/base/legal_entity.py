"""``base.legal_entity`` (法人基础库): one golden record per legal entity (unified social credit code),
fused from the registers of market regulation (enterprises), civil affairs (social organisations)
and the establishment office (public institutions), with tax as the authority for the tax status
(contracts/tables/base_legal_entity.yaml). The golden-record machinery is ``jobs.base.golden``; this
module adds the entity type derived from the credit code and the cross rule
``deregistered_active_in_tax``.
"""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from lake.reference import LEGAL_ENTITY
from lake.settings import Settings
from jobs.base.golden import conflict_struct, finding_struct, values_map

TABLE = "base.legal_entity"
TABLES = (TABLE, f"{TABLE}_history")  # the history is written by the same build
DEAD = LEGAL_ENTITY.deregistered_statuses

USCC_ENTITY_TYPES = {
    "11": "机关", "12": "事业单位", "13": "群众团体", "19": "其他机构编制单位",
    "51": "社会团体", "52": "民办非企业单位", "53": "基金会", "59": "其他民政登记单位",
    "91": "企业", "92": "个体工商户", "93": "农民专业合作社",
}


def entity_type_from_uscc(code: Column) -> Column:
    types = F.create_map(*[F.lit(x) for kv in USCC_ENTITY_TYPES.items() for x in kv])
    return F.coalesce(types[F.substring(code, 1, 2)], F.when(code.isNotNull(), F.lit("其他")))


def _rule_deregistered_active_in_tax(tc, contracts, has):
    """The registering department says 注销/吊销/撤销; tax still says 正常."""
    status = tc.columns[tc.column_names.index("status")]
    tax_src = tc.columns[tc.column_names.index("tax_status")].authority
    reg_srcs = [s for s in (status.authority, *status.fallback) if has(s)]
    if not has(tax_src) or not reg_srcs:
        return None
    reg_status = F.coalesce(*[F.col(f"status__{s}") for s in reg_srcs])
    reg_origin = F.coalesce(*[F.when(F.col(f"status__{s}").isNotNull(), F.lit(s)) for s in reg_srcs])
    tax = F.col(f"tax_status__{tax_src}")
    cond = reg_status.isin(*DEAD) & (tax == "正常")
    sc = contracts.source(tax_src)
    finding = finding_struct(
        tax_src, sc, F.col(f"_rk__{tax_src}"), "tax_status", "cross.deregistered_active_in_tax",
        "deregistered_active_in_tax",
        F.concat(F.lit("registered status is "), reg_status, F.lit(" ("), reg_origin, F.lit(") but tax status is 正常")),
        tax, F.col(f"_sha__{tax_src}"), F.col(f"_row__{tax_src}"), F.col(f"_batch__{tax_src}"))
    conflict = conflict_struct(tc.domain, "status", "cross.deregistered_active_in_tax", reg_origin, reg_status,
                         values_map([(s, F.col(f"status__{s}")) for s in reg_srcs] + [(tax_src, tax)]))
    return cond, finding, conflict


DERIVATIONS = {"entity_type_from_uscc": entity_type_from_uscc}
CROSS_RULES = {"deregistered_active_in_tax": _rule_deregistered_active_in_tax}


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    """Build and publish ``base.legal_entity`` through its gate."""
    from jobs.base import incremental

    return [incremental.build_table(settings, TABLE, as_of)]
