"""The government data resource catalogue (政务数据资源目录), generated from the contracts."""
