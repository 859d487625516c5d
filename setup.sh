#!/usr/bin/env bash
# Set up everything the lake needs, idempotently: .venv with the pinned packages and the `lake`
# command, the Delta jars in a local cache, and Airflow's SQLite metadata database.
# Re-running is quick and changes nothing.
#
# Offline / mirror options (government networks are often offline):
#   LAKE_JARS_FROM=/path/to/folder    copy the jars from this folder instead of Maven
#   LAKE_MAVEN_MIRROR=https://...     resolve jars through this Maven mirror instead of Maven Central
#   PIP_INDEX_URL / PIP_FIND_LINKS    the usual pip settings for a PyPI mirror or a wheel folder
#   LAKE_JARS_DIR=/path               where the jar cache lives (default .cache/jars)
set -euo pipefail
cd "$(dirname "$0")"
REPO="$(pwd)"
PY="${LAKE_PYTHON:-python3.11}"
JARS_DIR="${LAKE_JARS_DIR:-$REPO/.cache/jars}"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

command -v "$PY" >/dev/null || die "$PY not found: install Python 3.11 (or set LAKE_PYTHON)"
command -v java >/dev/null || die "java not found: install a Java 17 runtime (Spark 4 needs Java 17+)"

# 1. virtualenv + pinned packages (skipped when requirements.lock and pyproject.toml are unchanged)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
STAMP=.venv/.lake-installed
WANT="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing pinned packages (requirements.lock); the first time takes a few minutes"
  .venv/bin/python -m pip install --quiet --upgrade "pip==26.3"
  .venv/bin/python -m pip install --quiet -r requirements.lock
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$WANT" > "$STAMP"
else
  say "packages up to date"
fi

# 2. Delta jars into the local cache (Spark gets them as local jars; no Ivy at session start)
mkdir -p "$JARS_DIR"
if ls "$JARS_DIR"/delta-spark_*.jar >/dev/null 2>&1 && ls "$JARS_DIR"/delta-storage-*.jar >/dev/null 2>&1; then
  say "Delta jars cached in $JARS_DIR"
elif [ -n "${LAKE_JARS_FROM:-}" ]; then
  say "copying jars from $LAKE_JARS_FROM"
  cp "$LAKE_JARS_FROM"/*.jar "$JARS_DIR"/
else
  command -v mvn >/dev/null || die "mvn not found: install Maven, or set LAKE_JARS_FROM to a folder with the Delta jars"
  MVN_ARGS=(-q -B -f jars/pom.xml dependency:copy-dependencies -DincludeGroupIds=io.delta -DincludeScope=runtime "-DoutputDirectory=$JARS_DIR")
  if [ -n "${LAKE_MAVEN_MIRROR:-}" ]; then
    SETTINGS="$(mktemp)"
    cat > "$SETTINGS" <<XML
<settings><mirrors><mirror><id>lake-mirror</id><mirrorOf>*</mirrorOf><url>${LAKE_MAVEN_MIRROR}</url></mirror></mirrors></settings>
XML
    MVN_ARGS=(-s "$SETTINGS" "${MVN_ARGS[@]}")
  fi
  say "fetching Delta jars with Maven into $JARS_DIR"
  mvn "${MVN_ARGS[@]}" || die "Maven could not fetch the Delta jars (offline? set LAKE_MAVEN_MIRROR or LAKE_JARS_FROM)"
fi
.venv/bin/python -m lake.spark --check-jars "$JARS_DIR" || die "the jar cache does not match the pinned pyspark"

# 3. Airflow metadata database (SQLite, in .airflow/), migrated once
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
if [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
  say "initialising Airflow metadata database in $AIRFLOW_HOME"
  mkdir -p "$AIRFLOW_HOME"
  .venv/bin/airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -20 "$AIRFLOW_HOME/db-migrate.log"; die "airflow db migrate failed"; }
else
  say "Airflow metadata database ready ($AIRFLOW_HOME/airflow.db)"
fi
# One pool slot for every task that writes Delta tables: writers on a local filesystem are serialised.
if ! .venv/bin/airflow pools get lake_writes >/dev/null 2>&1; then
  .venv/bin/airflow pools set lake_writes 1 "Delta writers are serialised (lake_layout.md)" >/dev/null
  say "created Airflow pool lake_writes (1 slot)"
fi
# Serialise the DAGs into the metadata database now, so that `lake airflow dags list` and the UI show
# them right after set-up (otherwise "No data found" until a dag-processor has parsed the folder).
.venv/bin/airflow dags reserialize >"$AIRFLOW_HOME/dags-reserialize.log" 2>&1 \
  || { tail -20 "$AIRFLOW_HOME/dags-reserialize.log"; die "airflow dags reserialize failed (a DAG does not import?)"; }
say "DAGs serialised into the Airflow database ($(.venv/bin/airflow dags list --output plain 2>/dev/null | grep -c '^lake__') lake DAGs)"
say "done: run .venv/bin/lake --help"
