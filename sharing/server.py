"""The Delta Sharing server (the open protocol, PROTOCOL.md of delta-io/delta-sharing) for departments.

Endpoints, under ``/delta-sharing`` (the endpoint of every profile file):
``GET /shares``, ``GET /shares/{share}``, ``GET /shares/{share}/schemas``,
``GET /shares/{share}/schemas/{schema}/tables``, ``GET /shares/{share}/all-tables``,
``GET /shares/{share}/schemas/{schema}/tables/{table}/version`` (and the deprecated ``HEAD`` on the
table), ``GET .../metadata``, ``POST .../query`` (NDJSON, ``responseformat=parquet`` or ``delta``),
and ``GET /files/{signed id}``: the data files themselves, behind URLs signed with the server's key
(itsdangerous) that expire after ``files.url_minutes`` and name the token, department, view and file.

Every request authenticates with a bearer token (``sharing.tokens``), goes through the one access
decision (``sharing.access``) and is audited (``sharing.audit``), granted or refused. A department sees
only the tables it may read, each as its own view (masked, filtered); a query returns the files of one
Delta version of that view, so a reader sees one whole version even while a publication rewrites it.
Refusals are JSON ``{errorCode, message}`` with 400/401/403/404 (never 5xx for a caller's mistake, so the
official client does not retry them) and carry no data. Time travel, change data feed and streaming are
not shared: only the current version of a view is served."""
from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.settings import Settings
from sharing import access, audit, store, tokens
from sharing import policy as policy_mod
from sharing.errors import Refused

PREFIX = "/delta-sharing"
NDJSON = "application/x-ndjson; charset=utf-8"
CAPABILITIES = "delta-sharing-capabilities"


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "daxing-lake/" + "/".join(parts)))


class _Ctx:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.serializer = URLSafeTimedSerializer(store.signing_key(settings), salt="daxing-lake-share-file")

    @property
    def contracts(self):
        return contracts_mod.load(self.settings.contracts_dir)

    @property
    def policy(self):
        return policy_mod.load(self.settings.contracts_dir)


def _token_of(request: Request) -> str | None:
    h = request.headers.get("authorization", "")
    return h[7:].strip() if h[:7].lower() == "bearer " else None


def _page(items: list, request: Request) -> dict:
    try:
        start = int(request.query_params.get("pageToken") or 0)
        size = int(request.query_params.get("maxResults")) if request.query_params.get("maxResults") else len(items)
    except ValueError:
        raise Refused(400, "maxResults and pageToken must be integers") from None
    if size < 0 or start < 0:
        raise Refused(400, "maxResults must be non-negative")
    out = {"items": items[start:start + size]}
    if start + size < len(items):
        out["nextPageToken"] = str(start + size)
    return out


def _handler(action: str):
    """Wrap an endpoint: authenticate, run, audit (granted or refused), turn Refused into a JSON error."""
    def deco(fn):
        def endpoint(request: Request):
            ctx: _Ctx = request.app.state.ctx
            info = {"department_code": "", "token_id": tokens.token_id_of(_token_of(request)), "resource": "",
                    "columns": None, "rows": None, "purpose": ""}
            req_text = f"{request.method} {request.url.path}"
            try:
                if action != "file":
                    tok = tokens.verify(ctx.settings, _token_of(request))
                    info["department_code"] = tok.department_code
                    info["token_id"] = tok.token_id
                response = fn(request, ctx, info)
            except Refused as r:
                info["department_code"] = info["department_code"] or r.department_code
                audit.record(ctx.settings, channel="http", action=action, decision="refused", reason=r.reason,
                             status=r.status, client=request.client.host if request.client else "",
                             request=req_text, **info)
                return JSONResponse({"errorCode": r.code, "message": r.reason}, status_code=r.status)
            except Exception as e:  # a fault of the server: logged, audited, answered without any detail of the data
                log.exception("sharing server: %s %s failed", request.method, request.url.path)
                audit.record(ctx.settings, channel="http", action=action, decision="error",
                             reason=f"server error: {type(e).__name__}", status=500,
                             client=request.client.host if request.client else "", request=req_text, **info)
                return JSONResponse({"errorCode": "INTERNAL_ERROR", "message": "the server failed; it is logged"},
                                    status_code=500)
            audit.record(ctx.settings, channel="http", action=action, decision="granted",
                         status=response.status_code, client=request.client.host if request.client else "",
                         request=req_text, **info)
            return response
        return endpoint
    return deco


def _share(ctx: _Ctx, request: Request) -> str:
    share = access.check_name("share", request.path_params["share"])
    if share != ctx.policy.share:
        raise Refused(404, f"no share '{share}' here; the share is '{ctx.policy.share}'")
    return share


def _readable(ctx: _Ctx, info: dict) -> list[access.Access]:
    return access.readable(ctx.settings, ctx.contracts, ctx.policy, info["department_code"], datetime.now(timezone.utc))


def _table_item(ctx: _Ctx, a: access.Access) -> dict:
    zone, name = a.table.split(".", 1)
    share = ctx.policy.share
    return {"name": name, "schema": zone, "share": share, "shareId": _uuid(share), "id": _uuid(share, a.table)}


@_handler("list_shares")
def list_shares(request, ctx, info):
    share = ctx.policy.share
    return JSONResponse(_page([{"name": share, "id": _uuid(share)}], request))


@_handler("get_share")
def get_share(request, ctx, info):
    share = _share(ctx, request)
    return JSONResponse({"share": {"name": share, "id": _uuid(share)}})


@_handler("list_schemas")
def list_schemas(request, ctx, info):
    share = _share(ctx, request)
    info["resource"] = share
    zones = sorted({a.table.split(".")[0] for a in _readable(ctx, info)})
    return JSONResponse(_page([{"name": z, "share": share} for z in zones], request))


@_handler("list_tables")
def list_tables(request, ctx, info):
    share = _share(ctx, request)
    schema = access.check_name("schema", request.path_params["schema"])
    info["resource"] = f"{share}.{schema}"
    if schema not in ("base", "topic"):
        raise Refused(404, f"no schema '{schema}' in share {share}; schemas: base, topic")
    items = [_table_item(ctx, a) for a in _readable(ctx, info) if a.table.startswith(schema + ".")]
    return JSONResponse(_page(items, request))


@_handler("list_all_tables")
def list_all_tables(request, ctx, info):
    share = _share(ctx, request)
    info["resource"] = share
    return JSONResponse(_page([_table_item(ctx, a) for a in _readable(ctx, info)], request))


def _access(ctx: _Ctx, request: Request, info: dict) -> access.Access:
    p = request.path_params
    tid = access.table_id(ctx.policy, ctx.contracts, p["share"], p["schema"], p["table"])
    info["resource"] = tid
    acc = access.decide(ctx.settings, ctx.contracts, ctx.policy, info["department_code"], tid,
                        datetime.now(timezone.utc))
    info["columns"] = acc.columns
    info["purpose"] = acc.purpose
    return acc


def _view_table(ctx: _Ctx, acc: access.Access):
    uri = ctx.settings.path("share", acc.view)
    if not io.has_commit(uri):
        raise Refused(403, f"the view of {acc.table} is not published yet; it is materialised by the next publication")
    dt = io.delta_table(uri)
    proto = dt.protocol()
    if proto.reader_features or proto.min_reader_version > 1:
        raise Refused(403, f"the view of {acc.table} uses Delta reader features this server does not share")
    return dt


def _no_history(request_params: dict, version: int) -> None:
    for k in ("version", "timestamp", "startingVersion", "startingTimestamp", "endingVersion", "endingTimestamp"):
        v = request_params.get(k)
        if v is None:
            continue
        if k == "version" and str(v).isdigit() and int(v) == version:
            continue
        raise Refused(400, f"history is not shared: only the current version ({version}) of a view is served "
                           f"({k}={v} asked)")


@_handler("table_version")
def table_version(request, ctx, info):
    acc = _access(ctx, request, info)
    dt = _view_table(ctx, acc)
    _no_history(dict(request.query_params), dt.version())
    return Response(status_code=200, headers={"Delta-Table-Version": str(dt.version())})


def _format(request: Request) -> str:
    caps = request.headers.get(CAPABILITIES, "")
    for part in caps.lower().split(";"):
        k, _, v = part.strip().partition("=")
        if k == "responseformat":
            formats = [f.strip() for f in v.split(",") if f.strip()]
            if "parquet" in formats or not formats:
                return "parquet"
            if "delta" in formats:
                return "delta"
            raise Refused(400, f"unsupported responseformat '{v}'; this server answers parquet or delta")
    return "parquet"


def _metadata_lines(ctx: _Ctx, acc: access.Access, dt, fmt: str) -> list[dict]:
    md = dt.metadata()
    zone, name = acc.table.split(".", 1)
    tc = ctx.contracts.table(acc.table)
    table_id = _uuid(ctx.policy.share, acc.table, acc.department_code)
    if fmt == "delta":
        return [{"protocol": {"deltaProtocol": {"minReaderVersion": 1, "minWriterVersion": 2}}},
                {"metaData": {"deltaMetadata": {"id": table_id, "name": name, "description": tc.title,
                                                "format": {"provider": "parquet", "options": {}},
                                                "schemaString": dt.schema().to_json(),
                                                "partitionColumns": list(md.partition_columns),
                                                "configuration": {}, "createdTime": md.created_time},
                              "version": dt.version()}}]
    return [{"protocol": {"minReaderVersion": 1}},
            {"metaData": {"id": table_id, "name": name, "description": tc.title, "format": {"provider": "parquet"},
                          "schemaString": dt.schema().to_json(), "partitionColumns": list(md.partition_columns),
                          "configuration": {}, "version": dt.version()}}]


def _ndjson(lines: list[dict], version: int, fmt: str) -> Response:
    body = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
    return Response(body, media_type=NDJSON, headers={"Delta-Table-Version": str(version),
                                                       CAPABILITIES: f"responseformat={fmt}"})


@_handler("metadata")
def metadata(request, ctx, info):
    acc = _access(ctx, request, info)
    fmt = _format(request)
    dt = _view_table(ctx, acc)
    _no_history(dict(request.query_params), dt.version())
    return _ndjson(_metadata_lines(ctx, acc, dt, fmt), dt.version(), fmt)


@_handler("query")
def query(request, ctx, info):
    acc = _access(ctx, request, info)
    fmt = _format(request)
    body = request.state.body
    if not isinstance(body, dict):
        raise Refused(400, "the query body must be a JSON object (an empty object {} when there are no hints)")
    dt = _view_table(ctx, acc)  # one snapshot: every line below comes from this version
    version = dt.version()
    _no_history(body, version)
    access.check_hints(acc, body.get("jsonPredicateHints"), body.get("predicateHints"))
    lines = _metadata_lines(ctx, acc, dt, fmt)
    adds = dt.get_add_actions(flatten=False)
    import pyarrow as pa

    expires = int((time.time() + ctx.policy.url_minutes * 60) * 1000)
    rows = 0
    base = str(request.base_url).rstrip("/")
    for f in pa.table(adds).to_pylist():
        n = f.get("num_records")
        rows += n or 0
        signed = ctx.serializer.dumps({"t": info["token_id"], "d": acc.department_code, "v": acc.view, "f": f["path"],
                                       "x": acc.table, "n": n})
        url = f"{base}{PREFIX}/files/{signed}"
        fid = _uuid(acc.view, f["path"])
        stats = json.dumps({"numRecords": n}) if n is not None else None
        if fmt == "delta":
            add = {"path": url, "partitionValues": dict(f.get("partition_values") or {}), "size": f["size_bytes"],
                   "modificationTime": f["modification_time"], "dataChange": True}
            if stats:
                add["stats"] = stats
            lines.append({"file": {"id": fid, "expirationTimestamp": expires, "deltaSingleAction": {"add": add}}})
        else:
            item = {"url": url, "id": fid, "partitionValues": dict(f.get("partition_values") or {}),
                    "size": f["size_bytes"], "expirationTimestamp": expires}
            if stats:
                item["stats"] = stats
            lines.append({"file": item})
    info["rows"] = rows
    return _ndjson(lines, version, fmt)


@_handler("changes")
def changes(request, ctx, info):
    _access(ctx, request, info)
    raise Refused(400, "change data feed is not shared: query the table for its current version")


@_handler("file")
def files(request, ctx, info):
    try:
        payload = ctx.serializer.loads(request.path_params["signed"], max_age=ctx.policy.url_minutes * 60)
    except SignatureExpired:
        raise Refused(403, f"the file URL expired (valid {ctx.policy.url_minutes} minutes): query the table again") \
            from None
    except BadSignature:
        raise Refused(403, "the file URL is not one this server signed (forged or altered)") from None
    info.update(department_code=payload["d"], token_id=payload["t"], resource=payload["x"], rows=payload.get("n"))
    rec = tokens.tokens(ctx.settings).get(payload["t"])
    if rec is None or rec.state(datetime.now(timezone.utc)) != "active":
        raise Refused(401, f"bearer token {payload['t']} is no longer valid ({rec.state(datetime.now(timezone.utc)) if rec else 'unknown'}); "
                           "its file URLs are refused too")
    acc = access.decide(ctx.settings, ctx.contracts, ctx.policy, payload["d"], payload["x"], datetime.now(timezone.utc))
    info["columns"], info["purpose"] = acc.columns, acc.purpose
    if acc.view != payload["v"]:
        raise Refused(403, f"the grant behind this file URL changed; query {payload['x']} again")
    rel = payload["f"]
    if rel.startswith("/") or ".." in rel.split("/") or "://" in rel:
        raise Refused(400, "malformed file path in the URL")
    uri = ctx.settings.path("share", acc.view, rel)
    if "://" in uri:  # an object store: stream it through
        if not io.file_exists(uri):
            raise Refused(404, "the file no longer exists (vacuumed); query the table again")
        data = io.read_bytes(uri)
        return Response(data, media_type="application/octet-stream")
    if not os.path.isfile(uri):
        raise Refused(404, "the file no longer exists (vacuumed); query the table again")
    return FileResponse(uri, media_type="application/octet-stream")


async def _read_body(request: Request):
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return None


def create_app(settings: Settings) -> Starlette:
    ctx = _Ctx(settings)
    base = PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}"

    async def query_endpoint(request: Request):
        from starlette.concurrency import run_in_threadpool

        request.state.body = await _read_body(request)
        return await run_in_threadpool(query, request)

    async def not_found(request: Request, exc):
        path = request.url.path
        parts = path.split("/")
        if ".." in parts or "." in parts or "" in parts[1:-1] or "\\" in path:
            status, code, msg = 400, "INVALID_PARAMETER_VALUE", ("malformed path: a share, schema or table name "
                                                                 "cannot contain '/', '.' or '..'")
        else:
            status, code, msg = 404, "RESOURCE_DOES_NOT_EXIST", "no such endpoint; see the Delta Sharing protocol"
        audit.record(settings, channel="http", action="unknown", decision="refused", status=status, reason=msg,
                     token_id=tokens.token_id_of(_token_of(request)),
                     client=request.client.host if request.client else "", request=f"{request.method} {path[:200]}")
        return JSONResponse({"errorCode": code, "message": msg}, status_code=status)

    async def not_allowed(request: Request, exc):
        return JSONResponse({"errorCode": "INVALID_PARAMETER_VALUE", "message": "method not allowed"},
                            status_code=405)

    routes = [
        Route(PREFIX + "/shares", list_shares, methods=["GET"]),
        Route(PREFIX + "/shares/{share}", get_share, methods=["GET"]),
        Route(PREFIX + "/shares/{share}/schemas", list_schemas, methods=["GET"]),
        Route(PREFIX + "/shares/{share}/schemas/{schema}/tables", list_tables, methods=["GET"]),
        Route(PREFIX + "/shares/{share}/all-tables", list_all_tables, methods=["GET"]),
        Route(base, table_version, methods=["HEAD"]),
        Route(base + "/version", table_version, methods=["GET"]),
        Route(base + "/metadata", metadata, methods=["GET"]),
        Route(base + "/query", query_endpoint, methods=["POST"]),
        Route(base + "/changes", changes, methods=["GET"]),
        Route(PREFIX + "/files/{signed}", files, methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    app.state.ctx = ctx
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until stopped (Ctrl-C)."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)


class Background:
    """The server in a thread of this process (tests): ``with Background(settings) as url: ...``."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.host, self.port = host, port
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning",
                                                    access_log=False))
        self.thread = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}{PREFIX}"

    def __enter__(self) -> "Background":
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the sharing server did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
