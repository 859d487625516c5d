"""Cluster configuration without servers (runs in the default suite): the S3A jars and settings reach
Spark only for an s3a root or LAKE_S3_* settings, the JVM-free readers get the same S3 settings, the
environment file and the CLI verbs behave."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lake.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def _fake_jars(tmp_path: Path, hadoop: str) -> str:
    s3a = tmp_path / "jars" / "s3a"
    s3a.mkdir(parents=True)
    for name in (f"hadoop-aws-{hadoop}.jar", "bundle-2.29.52.jar", "analyticsaccelerator-s3-1.2.1.jar"):
        (s3a / name).write_bytes(b"")
    return str(tmp_path / "jars")


def test_a_local_lake_gets_no_s3a_configuration(tmp_path):
    from lake.spark import cluster_conf, s3a_conf

    s = Settings(root=str(tmp_path), jars_dir=str(tmp_path / "nothing-here"))
    assert not s.uses_s3
    assert s3a_conf(s) == {}  # no jars needed, nothing added: local runs are configured as before
    assert cluster_conf(s) == {}


def test_an_s3a_root_gets_the_jars_endpoint_keys_and_path_style(tmp_path):
    from lake.spark import bundled_hadoop_version, s3a_conf

    jars = _fake_jars(tmp_path, bundled_hadoop_version())
    s = Settings(root="s3a://lake/lake", jars_dir=jars, s3_endpoint="http://127.0.0.1:8333",
                 s3_access_key="AK", s3_secret_key="SK")
    conf = s3a_conf(s)
    cp = conf["spark.driver.extraClassPath"].split(os.pathsep)
    assert conf["spark.executor.extraClassPath"] == conf["spark.driver.extraClassPath"]
    assert sorted(Path(p).name for p in cp) == sorted(os.listdir(Path(jars) / "s3a"))
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8333"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.access.key"] == "AK" and conf["spark.hadoop.fs.s3a.secret.key"] == "SK"
    assert s.s3_storage_options() == {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
                                      "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "AK",
                                      "AWS_SECRET_ACCESS_KEY": "SK", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}


def test_s3a_jars_must_match_pysparks_hadoop(tmp_path):
    from lake.spark import SetupError, s3a_conf

    s = Settings(root="s3a://lake/lake", jars_dir=_fake_jars(tmp_path, "3.3.4"))
    with pytest.raises(SetupError, match="does not match pyspark's Hadoop"):
        s3a_conf(s)
    with pytest.raises(SetupError, match=r"setup.sh --cluster"):
        s3a_conf(Settings(root="s3a://lake/lake", jars_dir=str(tmp_path / "empty")))


def test_settings_read_the_cluster_environment(monkeypatch):
    for k, v in {"LAKE_ROOT": "s3a://lake/lake", "LAKE_SPARK_MASTER": "spark://127.0.0.1:7077",
                 "LAKE_SPARK_DRIVER_HOST": "127.0.0.1", "LAKE_EXECUTOR_MEMORY": "4g",
                 "LAKE_S3_ENDPOINT": "http://127.0.0.1:8333", "LAKE_S3_ACCESS_KEY": "AK",
                 "LAKE_S3_SECRET_KEY": "SK", "LAKE_S3_REGION": "cn-north-1", "LAKE_S3_PATH_STYLE": "false"}.items():
        monkeypatch.setenv(k, v)
    s = Settings.from_env()
    assert (s.root, s.inbox, s.spark_master, s.driver_host, s.executor_memory) == \
        ("s3a://lake/lake", "s3a://lake/lake/inbox", "spark://127.0.0.1:7077", "127.0.0.1", "4g")
    assert (s.s3_endpoint, s.s3_access_key, s.s3_secret_key, s.s3_region, s.s3_path_style) == \
        ("http://127.0.0.1:8333", "AK", "SK", "cn-north-1", False)
    from lake.spark import cluster_conf

    assert cluster_conf(s) == {"spark.executor.memory": "4g", "spark.driver.host": "127.0.0.1",
                               "spark.driver.bindAddress": "127.0.0.1"}
    monkeypatch.setenv("LAKE_S3_PATH_STYLE", "ja")
    with pytest.raises(ValueError, match="LAKE_S3_PATH_STYLE must be true or false, got 'ja'"):
        Settings.from_env()


def test_env_file_is_private_and_refuses_values_that_need_quoting(tmp_path):
    from lake.cluster.procs import ClusterError, write_env_file

    f = tmp_path / "cluster.env"
    write_env_file(f, {"LAKE_ROOT": "s3a://lake/lake", "LAKE_S3_SECRET_KEY": "a-b_c"})
    assert f.read_text() == "LAKE_ROOT=s3a://lake/lake\nLAKE_S3_SECRET_KEY=a-b_c\n"
    assert f.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ClusterError, match="LAKE_X"):
        write_env_file(f, {"LAKE_X": "a b"})


def test_cli_verbs(tmp_path):
    env = {**os.environ, "LAKE_CLUSTER_HOME": str(tmp_path / "state")}
    lake = str(Path(sys.executable).parent / "lake")

    def run(*args):
        return subprocess.run([lake, *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)

    r = run("airflow", "up", "now")
    assert r.returncode == 2 and "takes no arguments" in r.stderr
    r = run("cluster", "down")  # nothing started: fine, and says so
    assert r.returncode == 0 and "nothing was running" in r.stdout
    r = run("airflow", "down")
    assert r.returncode == 0 and "nothing was running" in r.stdout
    r = run("cluster", "status")
    assert r.returncode == 0 and "nothing started" in r.stdout
    r = run("airflow", "version")  # the passthrough to the airflow CLI still works
    assert r.returncode == 0 and r.stdout.strip().startswith("3.")


def test_airflow_env_puts_the_venvs_bin_first_on_path():
    from lake.cli import airflow_env

    env = airflow_env(Settings(root="/tmp/lake"))
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_uris_reach_their_bucket_with_the_settings_that_name_it(monkeypatch):
    """lake.io's helpers hold only a URI: the endpoint and keys come from the settings naming the bucket,
    else from the environment; local paths get no storage options."""
    from pyarrow import fs as pafs

    from lake import io

    for k in [k for k in os.environ if k.startswith("LAKE_")]:
        monkeypatch.delenv(k)
    Settings(root="s3a://bucket-one/lake", s3_endpoint="http://127.0.0.1:1234", s3_access_key="AK1",
             s3_secret_key="SK1")
    opts = io.storage_options("s3a://bucket-one/lake/base/population")
    assert opts["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1234" and opts["AWS_ACCESS_KEY_ID"] == "AK1"
    assert opts["AWS_ALLOW_HTTP"] == "true" and opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "false"
    assert io.delta_rs_uri("s3a://bucket-one/lake/x") == "s3://bucket-one/lake/x"
    fs, path = io.filesystem("s3a://bucket-one/lake/open/x/data.csv")
    assert isinstance(fs, pafs.S3FileSystem) and path == "bucket-one/lake/open/x/data.csv"
    assert io.storage_options("/tmp/lake/base/population") is None
    # a bucket no settings named: the environment's LAKE_S3_* settings
    monkeypatch.setenv("LAKE_S3_ENDPOINT", "http://127.0.0.1:5678")
    monkeypatch.setenv("LAKE_S3_ACCESS_KEY", "AK2")
    assert io.storage_options("s3a://bucket-two/x")["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5678"
    assert io.storage_options("s3a://bucket-one/x")["AWS_ACCESS_KEY_ID"] == "AK1"


def test_delta_reads_go_through_arrows_own_filesystem(tmp_path, monkeypatch):
    """lake.io.delta_table reads data files with Arrow's filesystem (rooted at the table), not
    deltalake's default Python PyFileSystem, whose callbacks from Arrow's I/O threads made JVM-free
    commands abort at exit on S3; it reads what deltalake's default reads, partition values that
    need percent-encoding included, from a relative root too."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake
    from pyarrow import fs as pafs

    from lake import io

    t = pa.table({"k": ["a b:c", "x/y", "日期=1", "%25", None], "v": [1, 2, 3, 4, 5]})
    write_deltalake(str(tmp_path / "t"), t, partition_by=["k"])
    monkeypatch.chdir(tmp_path)
    dt = io.delta_table("t")
    ds = dt.to_pyarrow_dataset()
    frag = next(iter(ds.get_fragments()))
    assert isinstance(frag.filesystem, pafs.SubTreeFileSystem)
    assert frag.filesystem.base_path.rstrip("/") == str(tmp_path / "t")
    ours = dt.to_pyarrow_table().sort_by("v")
    assert ours.equals(DeltaTable(str(tmp_path / "t")).to_pyarrow_table().sort_by("v"))
    assert ours.column("k").to_pylist() == ["a b:c", "x/y", "日期=1", "%25", None]
    assert io.delta_table("t", version=0).to_pyarrow_dataset().count_rows() == 5


def test_the_inbox_stays_where_lake_inbox_says_with_an_s3a_root(tmp_path, monkeypatch):
    """`lake ...` reads LAKE_ROOT through --root's envvar: an explicit LAKE_INBOX must survive it."""
    from lake import cli

    monkeypatch.setenv("LAKE_ROOT", "s3a://lake/lake")
    monkeypatch.setenv("LAKE_INBOX", str(tmp_path / "inbox"))
    s = cli._settings("s3a://lake/lake")
    assert s.root == "s3a://lake/lake" and s.inbox == str(tmp_path / "inbox")
    monkeypatch.delenv("LAKE_INBOX")
    assert cli._settings("s3a://lake/other").inbox == "s3a://lake/other/inbox"
    assert cli._settings(str(tmp_path / "x" / ".." / "lake")).root == str(tmp_path / "lake")


def test_stop_ends_children_that_left_the_process_group(tmp_path, monkeypatch):
    """procs.stop ends what procs.start started, with a child that moved to a process group of its
    own (as Airflow's LocalExecutor runs a task, its Spark JVM under it), and again when the leader is
    already gone but that child still runs: a run stopped half-way leaves no task behind."""
    import time

    from lake.cluster import procs

    monkeypatch.setenv("LAKE_CLUSTER_HOME", str(tmp_path))
    child = tmp_path / "child.pid"
    script = ("import os, subprocess, sys, time\n"
              "c = subprocess.Popen([sys.executable, '-c', 'import os, time; os.setpgid(0, 0); time.sleep(600)'])\n"
              f"open({str(child)!r}, 'w').write(str(c.pid))\n"
              "time.sleep(600)\n")

    def start() -> tuple[int, int]:
        child.unlink(missing_ok=True)
        leader = procs.start("leader", [sys.executable, "-c", script])
        deadline = time.monotonic() + 30
        while not (child.exists() and child.read_text()):
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.1)
        kid = int(child.read_text())
        deadline = time.monotonic() + 10
        while procs.alive(kid) and open(f"/proc/{kid}/stat").read().rsplit(")", 1)[1].split()[2] != str(kid):
            assert time.monotonic() < deadline, "the child did not leave the group"
            time.sleep(0.1)
        return leader, kid

    def gone(pid: int) -> bool:
        deadline = time.monotonic() + 10
        while procs.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return not procs.alive(pid)

    kid = None
    try:
        leader, kid = start()
        assert procs.stop("leader", timeout=5) is True
        assert gone(leader) and gone(kid)
        # the leader killed alone (its pid file left), the child still running: stop ends the child
        leader, kid = start()
        os.kill(leader, 9)
        assert gone(leader) and procs.alive(kid)
        assert procs.stop("leader", timeout=5) is True
        assert gone(kid)
        assert procs.stop("leader") is False
    finally:  # nothing of a failed run left sleeping
        procs.stop("leader", timeout=5)
        if kid and procs.alive(kid):
            os.kill(kid, 9)
