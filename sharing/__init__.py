"""The share zone as a service for departments (共享): who may read what, and how they read it.

- ``policy``: ``contracts/sharing.yaml`` (share name, protection per grade, token and URL lifetimes);
- ``masks``: masking, generalisation and exclusion of graded columns, as native Spark expressions and as a
  plain-Python oracle;
- ``grants``: requests and grants (申请 -> 审核 -> 授权) with columns, a row filter and an expiry;
- ``access``: the one decision every read goes through (server and CLI): which view a department sees;
- ``views``: one masked and row-filtered Delta view per grant (and one default view per shared table),
  materialised at publication with Spark;
- ``tokens``: one hashed, revocable bearer token per department and its Delta Sharing profile file;
- ``audit``: the append-only record of every read, granted or refused;
- ``server``: the open Delta Sharing protocol over HTTP (starlette + uvicorn);
- ``metrics``: supply and demand (unconditional share rate, open requests, time to decision, reads);
- ``store``: every JVM-free write of these tables (through ``lake.ledger``).
"""
