"""The registry of jobs, derived from the contracts: which job module builds each base and topic table
(``built_by``), what it is built from (``upstream``), what must exist before it can run
(``requires``) and when it runs (``schedule``: a cron expression, else whenever an upstream table
changes).

Everything that orders or schedules work reads it: ``lake run`` / ``lake build`` (``jobs.pipeline``)
run the jobs in ``order()``; ``dags/`` generates one DAG per job; readers name the job that completes
a table. A new table therefore needs a contract and a job module, nothing else.

A job module has ``TABLES`` (the tables it builds: exactly those whose contracts name it) and
``build(settings, as_of, **context) -> list[dict]`` (one result per table: table, status, rows; a
result may carry ``context``, keyword arguments for the jobs after it, such as the reading days a
delivery of sensor readings touched).
Golden-record modules also have ``DERIVATIONS`` and ``CROSS_RULES`` (name -> implementation), which
must cover every ``derive`` and ``cross_rules`` name their contracts use. ``check_modules`` imports
the modules and checks all of that; the contract loader itself never imports job code.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from functools import lru_cache

from lake import contracts as contracts_mod
from lake.contracts import ContractError, Contracts


@dataclass(frozen=True)
class Job:
    module: str             # jobs.base.population
    tables: tuple[str, ...]  # the tables it builds, by id
    upstream: tuple[str, ...]  # the tables it is built from (none of its own)
    requires: tuple[str, ...]  # the upstream tables that must exist before it can run
    schedule: str            # cron expression, or "" = when an upstream table changes

    @property
    def name(self) -> str:
        """``base.population`` for ``jobs.base.population``: the job's name in reports and logs."""
        return self.module.removeprefix("jobs.")

    @property
    def layer(self) -> str:
        return self.name.split(".")[0]

    @property
    def dag_id(self) -> str:
        return "lake__build__" + self.name.replace(".", "__")

    @property
    def task_id(self) -> str:
        return "build__" + self.name.replace(".", "__")

    def load(self):
        """The job module (imported on first use)."""
        return importlib.import_module(self.module)


@dataclass(frozen=True)
class Registry:
    contracts: Contracts
    jobs: dict[str, Job]  # module -> job, in build order

    def order(self) -> list[Job]:
        return list(self.jobs.values())

    def job_of(self, table: str) -> Job:
        for j in self.jobs.values():
            if table in j.tables:
                return j
        raise ContractError(f"no job builds '{table}'; tables with a job: "
                            + ", ".join(sorted(t for j in self.jobs.values() for t in j.tables)))

    def sources_of(self, table: str) -> list[str]:
        """Every source (department file) the table is built from, directly or through its upstream."""
        out: set[str] = set()
        todo = [table]
        while todo:
            t = todo.pop()
            tc = self.contracts.tables.get(t)
            for u in (tc.upstream if tc else ()):
                if u.startswith("raw."):
                    out.add(u.removeprefix("raw."))
                else:
                    todo.append(u)
        return sorted(out)

    def downstream_of(self, tables: set[str]) -> list[Job]:
        """The jobs whose tables depend, directly or not, on ``tables``, in build order."""
        hit = set(tables)
        out = []
        for j in self.order():
            if set(j.upstream) & hit:
                out.append(j)
                hit |= set(j.tables)
        return out

    def completes(self, zone: str, name: str) -> str:
        """What a user runs to complete the table ``<zone>/<name>`` (for messages about a missing or
        unfinished table)."""
        tid = f"{zone}.{name}"
        if zone in ("landing", "raw", "quarantine"):
            return "`lake ingest` (or the lake__ingest__<domain> DAG)"
        if zone in ("share", "open", "catalog"):
            return "`lake publish` (or the lake__publish DAG)"
        try:
            j = self.job_of(tid)
        except ContractError:
            return "`lake run`"
        return f"`lake build` (job {j.name}, DAG {j.dag_id})"


def _order(jobs: dict[str, Job], contracts: Contracts) -> list[Job]:
    """Jobs in dependency order (a job after every job building one of its upstream tables); ties in
    module order, so that the order is stable."""
    builder = {t: m for m, j in jobs.items() for t in j.tables}
    deps = {m: sorted({builder[u] for u in j.upstream if u in builder} - {m}) for m, j in jobs.items()}
    out: list[str] = []
    state: dict[str, int] = {}

    def visit(m: str, path: tuple) -> None:
        if state.get(m) == 2:
            return
        if state.get(m) == 1:
            raise ContractError("the jobs' upstream tables form a cycle: " + " -> ".join((*path, m)))
        state[m] = 1
        for d in deps[m]:
            visit(d, (*path, m))
        state[m] = 2
        out.append(m)

    for m in sorted(jobs, key=lambda m: (jobs[m].layer != "base", m)):
        visit(m, ())
    return [jobs[m] for m in out]


def build(contracts: Contracts) -> Registry:
    by_module: dict[str, list] = {}
    for tc in contracts.built_tables():
        by_module.setdefault(tc.built_by, []).append(tc)
    jobs = {}
    for module, tcs in by_module.items():
        own = {t.table for t in tcs}
        schedules = {t.schedule for t in tcs}
        if len(schedules) > 1:
            raise ContractError(f"{module} builds {sorted(own)} with different schedules {sorted(schedules)}; "
                                "the tables of one job share its schedule")
        upstream = tuple(dict.fromkeys(u for t in tcs for u in t.upstream if u not in own))
        requires = tuple(dict.fromkeys(u for t in tcs for u in t.requires if u not in own))
        jobs[module] = Job(module, tuple(sorted(own)), upstream, requires, schedules.pop())
    return Registry(contracts, {j.module: j for j in _order(jobs, contracts)})


@lru_cache(maxsize=8)
def load(contracts_dir: str) -> Registry:
    return build(contracts_mod.load(contracts_dir))


def check_modules(registry: Registry) -> None:
    """Import every job module and check it against the contracts that name it: ``TABLES`` equals
    the tables whose ``built_by`` is the module, ``build`` takes (settings, as_of), and every
    ``derive`` and ``cross_rules`` name has an implementation. Raises ContractError naming the
    contract file and the key."""
    for job in registry.order():
        try:
            mod = job.load()
        except ModuleNotFoundError as e:
            tc = registry.contracts.table(job.tables[0])
            raise ContractError(f"{tc.path}: built_by '{job.module}' cannot be imported ({e})") from None
        tables = tuple(sorted(getattr(mod, "TABLES", ())))
        if tables != job.tables:
            raise ContractError(f"{job.module}.TABLES is {list(tables)}, but the contracts that name it as built_by are "
                                f"{list(job.tables)}")
        fn = getattr(mod, "build", None)
        params = list(inspect.signature(fn).parameters.values()) if fn is not None else []
        if [p.name for p in params[:2]] != ["settings", "as_of"] or params[-1].kind != inspect.Parameter.VAR_KEYWORD:
            raise ContractError(f"{job.module} has no build(settings, as_of, ..., **context)")
        for t in job.tables:
            tc = registry.contracts.table(t)
            derivations = getattr(mod, "DERIVATIONS", {})
            for c in tc.columns:
                if c.derive and c.derive != "surrogate_id" and c.derive not in derivations:
                    raise ContractError(f"{tc.path}: column '{c.name}': derive '{c.derive}' is not one of "
                                        f"{job.module}.DERIVATIONS ({', '.join(sorted(derivations)) or 'none'})")
            rules = getattr(mod, "CROSS_RULES", {})
            unknown = sorted(set(tc.cross_rules) - set(rules))
            if unknown:
                raise ContractError(f"{tc.path}: cross_rules {unknown} are not implemented by {job.module}; known: "
                                    f"{', '.join(sorted(rules)) or 'none'}")
