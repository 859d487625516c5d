"""The cluster tier on 127.0.0.1 (README "Running on a cluster"): a Spark standalone master and
workers from the pinned pyspark's own jars, SeaweedFS as a real S3 object store, and Airflow's
scheduler, dag-processor, triggerer and API server with the LocalExecutor on a private PostgreSQL.

Everything it starts keeps its pid file, log and data in one git-ignored state folder
(``LAKE_CLUSTER_HOME``, default ``.cache/cluster``), together with the generated keys and passwords
(``secrets.json``, mode 0600). ``lake cluster up|down|status`` and ``lake airflow up|down`` drive it.
"""
