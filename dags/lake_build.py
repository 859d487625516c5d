"""Build the base and topic databases, one DAG per job of the registry (``lake.registry``, read from
the contracts: ``built_by``, ``upstream``, ``requires``, ``schedule``).

A job's DAG runs when one of its upstream tables changes (their assets), or on its cron schedule
(the sensor readings at 00:30, for the day before). While a table it requires does not exist yet
(a department has not delivered, the base map is not built) its task is skipped, which is not a
failure; it runs again when the missing table appears (its first version is an asset event). A
clock-driven run instead waits for those tables (``wait__<job>``, a sensor in reschedule mode), and
skips when nothing was delivered for its day. A build that changes no table is skipped too, so it
triggers nothing. Every table goes through its Great Expectations gate before it is published; a
failed gate fails the task and names the failed expectations (retries do not help a data problem).
"""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, CronTriggerTimetable, get_current_context, task

from jobs.orchestration import (COMMON_DAG_KWARGS, TIMEZONE, WAIT, inputs_ready, priority, run_build_task,
                                the_registry, wait_task_id)

for job in the_registry().order():
    schedule = (CronTriggerTimetable(job.schedule, timezone=TIMEZONE) if job.schedule
                else AssetAny(*[Asset(u) for u in job.upstream]))
    with DAG(
        dag_id=job.dag_id,
        description=f"{job.name}: builds {', '.join(job.tables)} through their gates",
        schedule=schedule,
        **COMMON_DAG_KWARGS,
        params={"as_of": None, **({"day": None} if job.schedule else {})},
        doc_md=__doc__,
        tags=["lake", "build", job.layer],
    ) as dag:

        @task(task_id=job.task_id, outlets=[Asset(t) for t in job.tables], priority_weight=priority(job))
        def build(module: str = job.module) -> list[dict]:
            return run_build_task(module, get_current_context())

        if job.schedule:

            @task.sensor(task_id=wait_task_id(job), **WAIT)
            def wait(module: str = job.module) -> bool:
                return inputs_ready(module)

            wait() >> build()
        else:
            build()
    globals()[dag.dag_id] = dag
