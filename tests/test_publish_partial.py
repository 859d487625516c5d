"""Publication on a lake whose departments have not all delivered (the full-scale run of 2026-12-06
without a sensing day died in publish: "base.iot_device is not published yet"): `lake run`'s publish
stage shares, views and opens what is built, names what is not in one line, and still exits cleanly."""
from __future__ import annotations

import shutil
from pathlib import Path

from deltalake import DeltaTable

from lake import io
from lake.settings import Settings

from conftest import AS_OF


def test_publish_skips_a_table_not_built_yet_and_publishes_the_rest(tiny_lake, tmp_path, caplog):
    from jobs import publish

    s = Settings.from_env(root=str(tmp_path / "lake"), shuffle_partitions=2, driver_memory="2g")
    shutil.copytree(tiny_lake["settings"].root, s.root, ignore=shutil.ignore_patterns("inbox"))
    root = Path(s.root)
    # as if no sensing ledger had been delivered yet: the table, its share copy and its views are gone
    for p in [root / "base" / "iot_device", root / "share" / "base__iot_device",
              *(root / "share").glob("_views/*/base__iot_device")]:
        shutil.rmtree(p)
    assert not io.has_commit(io.path_of(s, "base.iot_device"))
    with caplog.at_level("INFO"):
        out = publish.run(s, AS_OF)
    shared = {r["table"]: r["status"] for r in out["share"]}
    assert "share.base__iot_device" not in shared and shared["share.base__population"] == "unchanged"
    assert not (root / "share" / "base__iot_device").exists()
    assert not any(v["view"].endswith("base__iot_device") for v in out["views"])
    assert any(v["view"] == "share/_views/_default/base__population" for v in out["views"])
    assert not list((root / "share" / "_views").glob("*/base__iot_device"))
    assert any("not built yet" in r.getMessage() and "base.iot_device" in r.getMessage() for r in caplog.records)
    grants = {r["share_table"] for r in DeltaTable(str(root / "share" / "_grants")).to_pyarrow_table().to_pylist()}
    assert "base__iot_device" not in grants and "base__population" in grants
