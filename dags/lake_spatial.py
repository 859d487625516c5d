"""Build the base map when its sources or the population/legal-entity base databases change:
administrative boundaries, then the standard address library (标准地名地址库) that every department's
addresses are linked to, then POIs (placed in their town by point-in-polygon, with the address code
of their link).

Every table goes through its Great Expectations gate; the address match rate per source is kept in
``quality/address_match`` and unmatched addresses go back to their departments as findings.
"""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, get_current_context, task

from jobs.orchestration import BASE_TABLES, COMMON_DAG_KWARGS, DOMAINS, as_of

with DAG(
    dag_id="lake__build__spatial",
    description="Base map: boundaries, POIs and the standard address library, gated, published to base/",
    schedule=AssetAny(*[Asset(f"raw.{s}") for s in DOMAINS["spatial"]], *[Asset(t) for t in BASE_TABLES.values()]),
    **COMMON_DAG_KWARGS,
    params={"as_of": None},
    doc_md=__doc__,
    tags=["lake", "build", "spatial"],
):

    @task(task_id="build__base__admin_boundary", outlets=[Asset("base.admin_boundary")])
    def boundaries() -> list[dict]:
        from jobs import spatial
        from lake.settings import Settings

        return spatial.run(Settings.from_env(), as_of(get_current_context()), ("boundaries",))

    @task(task_id="build__base__standard_address", outlets=[Asset("base.standard_address")])
    def standard_address() -> dict:
        from jobs import address_library
        from lake.settings import Settings

        return address_library.run(Settings.from_env(), as_of(get_current_context()))

    @task(task_id="build__base__poi", outlets=[Asset("base.poi")])
    def poi() -> list[dict]:
        from jobs import spatial
        from lake.settings import Settings

        return spatial.run(Settings.from_env(), as_of(get_current_context()), ("poi",))

    boundaries() >> standard_address() >> poi()
