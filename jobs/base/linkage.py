"""Record linkage: rows that arrive without an ID number are linked to a person by name, gender, birth
date, town and address with Splink (Fellegi-Sunter model, DuckDB backend, in-process).

The model is configuration, not code: ``contracts/linkage/<domain>.yaml`` holds the comparisons'
m and u probabilities, the blocking rules and the two thresholds. A query row is

* ``linked``    when its best candidate scores at least ``link_threshold`` and no other candidate scores
                at least ``review_threshold`` (an unambiguous match);
* ``review``    when its best candidate scores at least ``review_threshold`` but the row is not linked
                (a weak or ambiguous match): every candidate pair above ``review_threshold`` is listed in
                ``quality/review_pairs`` for a person to decide, nothing is merged silently;
* ``unmatched`` otherwise (a person the register does not know).

Decisions go to ``quality/record_links``; only ``linked`` rows feed the golden records. The fixed model
makes a re-run give the same decisions; Splink scores blocks of candidate pairs, so the work grows with
the number of rows without an ID (tens of thousands), not with the register (millions).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake.contracts import ContractError
from lake.log import log

LINK_COLUMNS = ("name", "gender", "birth_date", "town", "address")
DECISIONS_SCHEMA = (
    "source string, record_key string, _batch_id string, _file_sha256 string, _row long, "
    "linked_key string, match_probability double, decision string, candidates int"
)
REVIEW_SCHEMA = (
    "source string, record_key string, _batch_id string, candidate_key string, match_probability double, "
    "query_name string, candidate_name string, query_birth_date string, candidate_birth_date string, "
    "query_address string, candidate_address string"
)


@dataclass(frozen=True)
class LinkageModel:
    link_threshold: float
    review_threshold: float
    blocking: tuple[tuple[str, ...], ...]
    comparisons: tuple[dict, ...]
    path: str

    @classmethod
    def load(cls, path: Path) -> "LinkageModel":
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ContractError(f"{path}: cannot read the linkage model: {e}") from None
        try:
            m = cls(link_threshold=float(d["link_threshold"]), review_threshold=float(d["review_threshold"]),
                    blocking=tuple(tuple(b) for b in d["blocking"]), comparisons=tuple(d["comparisons"]),
                    path=str(path))
        except (KeyError, TypeError, ValueError) as e:
            raise ContractError(f"{path}: linkage model is missing or has a bad '{e}'") from None
        if not 0 < m.review_threshold <= m.link_threshold < 1:
            raise ContractError(f"{path}: need 0 < review_threshold <= link_threshold < 1")
        for c in m.comparisons:
            if c.get("column") not in LINK_COLUMNS:
                raise ContractError(f"{path}: comparison column must be one of {LINK_COLUMNS}, got {c.get('column')}")
        return m

    def splink_settings(self, n_reference: int):
        import splink.comparison_library as cl
        from splink import SettingsCreator, block_on

        comps = []
        for c in self.comparisons:
            kind = c["kind"]
            if kind == "exact":
                comp = cl.ExactMatch(c["column"])
            elif kind == "levenshtein":
                comp = cl.LevenshteinAtThresholds(c["column"], list(c["thresholds"]))
            else:
                raise ContractError(f"{self.path}: unknown comparison kind '{kind}' (exact, levenshtein)")
            comps.append(comp.configure(m_probabilities=list(c["m"]), u_probabilities=list(c["u"])))
        return SettingsCreator(
            link_type="link_only", unique_id_column_name="uid",
            # a query row matches at most one of the n register rows
            probability_two_random_records_match=1.0 / max(n_reference, 1),
            blocking_rules_to_generate_predictions=[block_on(*b) for b in self.blocking],
            comparisons=comps, retain_intermediate_calculation_columns=False, retain_matching_columns=True,
        )


def model_for(contracts_dir: str, domain: str) -> LinkageModel:
    path = Path(contracts_dir) / "linkage" / f"{domain}.yaml"
    if not path.exists():
        raise ContractError(f"{path}: no linkage model for domain '{domain}'")
    return LinkageModel.load(path)


def _as_strings(df: DataFrame, uid: F.Column) -> DataFrame:
    cols = [uid.alias("uid")]
    for c in LINK_COLUMNS:
        cols.append(F.col(c).cast("string").alias(c) if c in df.columns else F.lit(None).cast("string").alias(c))
    return df.select(*cols)


def link(spark: SparkSession, model: LinkageModel, reference: DataFrame, query: DataFrame,
         n_reference: int | None = None) -> tuple[DataFrame, DataFrame]:
    """(decisions, review pairs) for ``query`` rows (source, record_key, _batch_id, _file_sha256, _row and
    the link columns) against ``reference`` (one row per entity: ``_key`` and the link columns).
    ``n_reference``: the size of the register for the prior (default: the reference's rows), given
    when ``reference`` holds only the blocking candidates of the query rows."""
    import duckdb
    from splink import DuckDBAPI, Linker

    t0 = time.time()
    q = query.withColumn("_uid", F.concat_ws("|", "source", "_batch_id", "record_key"))
    q_meta = q.select("_uid", "source", "record_key", "_batch_id", "_file_sha256", "_row")
    q_tab = _as_strings(q, F.concat(F.lit("q|"), F.col("_uid"))).toArrow()
    if q_tab.num_rows == 0:
        return (spark.createDataFrame([], DECISIONS_SCHEMA), spark.createDataFrame([], REVIEW_SCHEMA))
    r_tab = _as_strings(reference, F.concat(F.lit("r|"), F.col("_key"))).toArrow()
    if r_tab.num_rows == 0:  # no candidate in the register: every query row is unmatched
        decided = q_meta.select("source", "record_key", "_batch_id", "_file_sha256", F.col("_row").cast("long"),
                                F.lit(None).cast("string").alias("linked_key"), F.lit(0.0).alias("match_probability"),
                                F.lit("unmatched").alias("decision"), F.lit(0).cast("int").alias("candidates"))
        return decided, spark.createDataFrame([], REVIEW_SCHEMA)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    db = DuckDBAPI(con)
    linker = Linker([db.register(q_tab, dataset_display_name="query"),
                     db.register(r_tab, dataset_display_name="register")],
                    model.splink_settings(n_reference or r_tab.num_rows), log_level=None)
    pred = linker.inference.predict(threshold_match_probability=min(0.01, model.review_threshold))
    pairs = con.sql(f"""
        SELECT CASE WHEN uid_l LIKE 'q|%' THEN uid_l ELSE uid_r END AS q_uid,
               CASE WHEN uid_l LIKE 'q|%' THEN uid_r ELSE uid_l END AS r_uid,
               match_probability,
               CASE WHEN uid_l LIKE 'q|%' THEN name_l ELSE name_r END AS query_name,
               CASE WHEN uid_l LIKE 'q|%' THEN name_r ELSE name_l END AS candidate_name,
               CASE WHEN uid_l LIKE 'q|%' THEN birth_date_l ELSE birth_date_r END AS query_birth_date,
               CASE WHEN uid_l LIKE 'q|%' THEN birth_date_r ELSE birth_date_l END AS candidate_birth_date,
               CASE WHEN uid_l LIKE 'q|%' THEN address_l ELSE address_r END AS query_address,
               CASE WHEN uid_l LIKE 'q|%' THEN address_r ELSE address_l END AS candidate_address
        FROM {pred.physical_name}
    """).to_arrow_table()
    con.close()
    if pairs.num_rows == 0:
        pdf = spark.createDataFrame([], "q_uid string, r_uid string, match_probability double, query_name string, "
                                        "candidate_name string, query_birth_date string, candidate_birth_date string, "
                                        "query_address string, candidate_address string")
    else:
        pdf = spark.createDataFrame(pairs)
    pdf = (pdf.withColumn("_uid", F.expr("substring(q_uid, 3)")).withColumn("candidate_key", F.expr("substring(r_uid, 3)"))
           .withColumn("match_probability", F.round("match_probability", 6)))
    best = pdf.groupBy("_uid").agg(
        F.max_by("candidate_key", F.struct("match_probability", "candidate_key")).alias("best_key"),
        F.max("match_probability").alias("best_p"),
        F.sum(F.when(F.col("match_probability") >= model.review_threshold, 1).otherwise(0)).alias("n_review"),
        F.count("*").alias("candidates"),
    )
    decided = q_meta.join(best, "_uid", "left").select(
        "source", "record_key", "_batch_id", "_file_sha256", F.col("_row").cast("long"),
        F.when((F.col("best_p") >= model.link_threshold) & (F.col("n_review") == 1), F.col("best_key")).alias("linked_key"),
        F.coalesce("best_p", F.lit(0.0)).alias("match_probability"),
        F.when((F.col("best_p") >= model.link_threshold) & (F.col("n_review") == 1), F.lit("linked"))
        .when(F.col("best_p") >= model.review_threshold, F.lit("review")).otherwise(F.lit("unmatched")).alias("decision"),
        F.coalesce("candidates", F.lit(0)).cast("int").alias("candidates"),
    )
    review = (
        pdf.join(decided.where(F.col("decision") == "review").select(
            F.concat_ws("|", "source", "_batch_id", "record_key").alias("_uid"), "source", "record_key", "_batch_id"), "_uid")
        .where(F.col("match_probability") >= model.review_threshold)
        .select("source", "record_key", "_batch_id", "candidate_key", "match_probability", "query_name",
                "candidate_name", "query_birth_date", "candidate_birth_date", "query_address", "candidate_address")
    )
    log.info("linkage: %d query rows against %d register rows, %d candidate pairs in %.1fs",
             q_tab.num_rows, r_tab.num_rows, pairs.num_rows, time.time() - t0)
    return decided, review
