#!/usr/bin/env bash
# Set up everything the lake needs, idempotently: .venv with the pinned packages and the `lake`
# command, the Delta jars in a local cache, and Airflow's SQLite metadata database.
# Re-running is quick and changes nothing.
#
#   ./setup.sh --cluster   also the optional cluster tier (README "Running on a cluster"): the S3A
#                          jars (hadoop-aws + the AWS SDK bundle, ~640 MB) into <jar cache>/s3a,
#                          Debian's postgresql (apt-get, when initdb is missing) and SeaweedFS's
#                          `weed` built from its Go module into .cache/bin (~230 MB, minutes)
#
# Offline / mirror options (government networks are often offline):
#   LAKE_JARS_FROM=/path/to/folder    copy the jars from this folder instead of Maven
#   LAKE_MAVEN_MIRROR=https://...     resolve jars through this Maven mirror instead of Maven Central
#   PIP_INDEX_URL / PIP_FIND_LINKS    the usual pip settings for a PyPI mirror or a wheel folder
#   LAKE_JARS_DIR=/path               where the jar cache lives (default .cache/jars)
set -euo pipefail
CLUSTER=0
for arg in "$@"; do
  case "$arg" in
    --cluster) CLUSTER=1 ;;
    *) printf '[setup] error: unknown option %s (known: --cluster)\n' "$arg" >&2; exit 2 ;;
  esac
done
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
WANT="$(cat requirements.lock requirements-nodeps.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing pinned packages (requirements.lock); the first time takes a few minutes"
  .venv/bin/python -m pip install --quiet --upgrade "pip==26.3"
  .venv/bin/python -m pip install --quiet -r requirements.lock
  .venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.lock   # exact pins that conflict (see the file)
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$WANT" > "$STAMP"
else
  say "packages up to date"
fi

# 2. Delta jars into the local cache (Spark gets them as local jars; no Ivy at session start)
S3A_JARS='hadoop-aws-*.jar bundle-*.jar analyticsaccelerator-s3-*.jar wildfly-openssl-*.jar'
# fetch_jars WHAT OUTDIR MAVEN-ARGS...: resolve with Maven (through LAKE_MAVEN_MIRROR when set)
fetch_jars() {
  local what="$1" out="$2"; shift 2
  command -v mvn >/dev/null || die "mvn not found: install Maven, or set LAKE_JARS_FROM to a folder with the $what jars"
  local args=(-q -B -f jars/pom.xml dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$out" "$@")
  if [ -n "${LAKE_MAVEN_MIRROR:-}" ]; then
    local settings
    settings="$(mktemp)"
    cat > "$settings" <<XML
<settings><mirrors><mirror><id>lake-mirror</id><mirrorOf>*</mirrorOf><url>${LAKE_MAVEN_MIRROR}</url></mirror></mirrors></settings>
XML
    args=(-s "$settings" "${args[@]}")
  fi
  say "fetching $what jars with Maven into $out"
  mvn "${args[@]}" || die "Maven could not fetch the $what jars (offline? set LAKE_MAVEN_MIRROR or LAKE_JARS_FROM)"
}
mkdir -p "$JARS_DIR"
if ls "$JARS_DIR"/delta-spark_*.jar >/dev/null 2>&1 && ls "$JARS_DIR"/delta-storage-*.jar >/dev/null 2>&1; then
  say "Delta jars cached in $JARS_DIR"
elif [ -n "${LAKE_JARS_FROM:-}" ]; then
  say "copying jars from $LAKE_JARS_FROM"
  for jar in "$LAKE_JARS_FROM"/*.jar; do
    skip=0
    for pat in $S3A_JARS; do case "$(basename "$jar")" in $pat) skip=1 ;; esac; done
    [ "$skip" = 1 ] || cp "$jar" "$JARS_DIR"/
  done
else
  fetch_jars Delta "$JARS_DIR" -DincludeGroupIds=io.delta
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
# 3b. Serialise the DAGs into the metadata database now, so that `lake airflow dags list` and the UI show
# them right after set-up (otherwise "No data found" until a dag-processor has parsed the folder).
.venv/bin/airflow dags reserialize >"$AIRFLOW_HOME/dags-reserialize.log" 2>&1 \
  || { tail -20 "$AIRFLOW_HOME/dags-reserialize.log"; die "airflow dags reserialize failed (a DAG does not import?)"; }
say "DAGs serialised into the Airflow database ($(.venv/bin/airflow dags list --output plain 2>/dev/null | grep -c '^lake__') lake DAGs)"

# 4. Optional cluster tier: S3A jars, PostgreSQL, SeaweedFS
if [ "$CLUSTER" = 1 ]; then
  S3A_DIR="$JARS_DIR/s3a"
  mkdir -p "$S3A_DIR"
  if ls "$S3A_DIR"/hadoop-aws-*.jar >/dev/null 2>&1 && ls "$S3A_DIR"/bundle-*.jar >/dev/null 2>&1; then
    say "S3A jars cached in $S3A_DIR"
  elif [ -n "${LAKE_JARS_FROM:-}" ]; then
    FROM="$LAKE_JARS_FROM"; [ -d "$LAKE_JARS_FROM/s3a" ] && FROM="$LAKE_JARS_FROM/s3a"
    say "copying S3A jars from $FROM"
    for pat in $S3A_JARS; do cp "$FROM"/$pat "$S3A_DIR"/ 2>/dev/null || true; done
  else
    # only what hadoop-aws brings (Spark already ships hadoop-client-api/-runtime)
    fetch_jars S3A "$S3A_DIR" -Ps3a -DincludeArtifactIds=hadoop-aws,bundle,analyticsaccelerator-s3,wildfly-openssl
  fi
  .venv/bin/python -m lake.spark --check-s3a-jars "$JARS_DIR" || die "the S3A jars do not match the pinned pyspark"
  .venv/bin/lake cluster install || die "the cluster tier could not be installed (see above)"
fi

# 5. The open-data portal's browser libraries (opendata/web/package.json, exact versions in its
#    package-lock.json) with npm ci into opendata/web/node_modules (git-ignored); skipped when the lock
#    is unchanged. Without npm everything else works and `lake portal build` says what is missing.
WEB=opendata/web
if command -v npm >/dev/null; then
  WEB_STAMP="$WEB/node_modules/.lake-installed"
  WEB_WANT="$(cat "$WEB/package.json" "$WEB/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$WEB_STAMP" 2>/dev/null)" != "$WEB_WANT" ]; then
    say "installing the portal's npm packages (npm ci in $WEB)"
    (cd "$WEB" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
      || die "npm ci failed in $WEB (offline? point npm at a mirror: npm config set registry <url>)"
    echo "$WEB_WANT" > "$WEB_STAMP"
  else
    say "portal npm packages up to date ($WEB/node_modules)"
  fi
else
  say "npm not found: the open-data portal (lake portal build) needs Node.js with npm; the rest works without it"
fi
say "done: run .venv/bin/lake --help"
