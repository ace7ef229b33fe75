"""The EdgeInfer inference service: FastAPI + uvicorn over a verified deploy bundle.

``POST /infer`` takes one window (C, S, T) or a batch (N, C, S, T) in physical units, as JSON
``{"windows": [...]}`` or as a binary ``.npy`` body (``application/octet-stream``), and returns per window
the label, the probabilities (softmax(logits / T) with stage 08's temperature), the FSQ levels and code
index, the conformal prediction set at the run's alpha and the raw logits; and once per response the
backend that computed them.
``GET /healthz`` and ``GET /metrics`` (Prometheus text) serve operations.

Why the /infer route reads the raw body instead of a pydantic model: validating a list of 10^5 floats
through pydantic costs far more than the inference itself; the body is parsed with orjson (or
``np.load(allow_pickle=False)``) and checked once, as an array. Bad input gets a 4xx that names the
expected shape; only a fault of the service itself is a 500, and the service keeps serving after both.
"""

from __future__ import annotations

import io
import time
from typing import Any, Optional

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from workbench.deploy.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from workbench.deploy.predictor import Predictor, prediction_body
from workbench.errors import InferenceInputError as InputError

JSON_TYPES = ("application/json",)
NPY_TYPES = ("application/octet-stream", "application/x-npy", "application/npy")
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# Requests up to this many windows run on the event loop (a thread hop costs more than the inference);
# larger ones run in the thread pool so the other core keeps serving.
INLINE_MAX_WINDOWS = 64

STATUS_OF = {"too_many": 413, "body_too_large": 413, "content_type": 415, "bad_json": 400, "bad_npy": 400}


def _json(obj: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json"
    )


class InferHandler:
    """POST /infer from raw ASGI pieces: content type, declared length, the ``receive`` callable.
    Returns (status, JSON bytes); bad input becomes a 4xx naming the expected shape, never an exception."""

    def __init__(self, predictor: Predictor, metrics: ServiceMetrics, max_body_bytes: int):
        self.predictor = predictor
        self.metrics = metrics
        self.max_body_bytes = int(max_body_bytes)
        self.expected = predictor.expected

    async def read_body(self, declared: Optional[bytes], receive: Any) -> bytes:
        limit = self.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise InputError(
                "body_too_large",
                f"request body of {int(declared)} bytes exceeds the limit of {limit} "
                f"bytes; send fewer windows per request (a .npy body is ~4x "
                f"smaller than JSON)",
            )
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InputError("disconnected", "client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise InputError(
                    "body_too_large", f"request body exceeds the limit of {limit} bytes; send fewer windows per request"
                )
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def parse(self, content_type: str, body: bytes) -> Any:
        if not body:
            raise InputError("empty", "empty request body")
        if content_type in JSON_TYPES or content_type.endswith("+json"):
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InputError("bad_json", f"body is not valid JSON ({exc})") from None
            if not isinstance(obj, dict) or "windows" not in obj:
                raise InputError("bad_json", "JSON body must be an object with the key 'windows'")
            return obj["windows"]
        if content_type in NPY_TYPES:
            try:
                return np.load(io.BytesIO(body), allow_pickle=False)
            except Exception as exc:  # np.load raises ValueError, OSError, EOFError... on junk
                raise InputError(
                    "bad_npy",
                    f"body is not a .npy array without pickles ({type(exc).__name__}: {exc}); write it with np.save",
                ) from None
        raise InputError(
            "content_type",
            f"content-type {content_type or '(none)'!r} is not accepted; send "
            f'application/json {{"windows": ...}} or application/octet-stream '
            f"(a .npy file)",
        )

    def reject(self, kind: str, message: str) -> tuple[int, bytes]:
        status = STATUS_OF.get(kind, 422)
        self.metrics.error(kind)
        self.metrics.request("/infer", status)
        return status, orjson.dumps({"error": kind, "detail": message, "expected": self.expected})

    async def handle(self, content_type: str, declared: Optional[bytes], receive: Any) -> tuple[int, bytes]:
        t0 = time.perf_counter()
        content_type = content_type.split(";")[0].strip().lower()
        predictor = self.predictor
        try:
            x = predictor.check_windows(self.parse(content_type, await self.read_body(declared, receive)))
            if x.shape[0] <= INLINE_MAX_WINDOWS:
                pred = predictor.predict(x)
            else:
                pred = await run_in_threadpool(predictor.predict, x)
            payload = orjson.dumps(prediction_body(pred, predictor), option=orjson.OPT_SERIALIZE_NUMPY)
        except InputError as exc:
            return self.reject(exc.kind, str(exc))
        except Exception as exc:  # a fault of the service, not of the request: 500, counted, keep serving
            self.metrics.error("internal")
            self.metrics.request("/infer", 500)
            return 500, orjson.dumps({"error": "internal", "detail": f"{type(exc).__name__}: {exc}"})
        self.metrics.observe_inference(int(x.shape[0]), pred.timings, time.perf_counter() - t0)
        return 200, payload


class EdgeInferApp:
    """The ASGI entry point. ``POST /infer`` goes straight to :class:`InferHandler` (FastAPI's routing,
    middleware and dependency solving cost more than a batch-1 inference); everything else -- /healthz,
    /metrics, /docs and the OpenAPI schema, which documents /infer -- is the FastAPI app."""

    def __init__(self, api: FastAPI, handler: InferHandler):
        self.api = api
        self.handler = handler

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/infer" and scope["method"] == "POST":
            ctype, declared = b"", None
            for name, value in scope["headers"]:
                if name == b"content-type":
                    ctype = value
                elif name == b"content-length":
                    declared = value
            status, payload = await self.handler.handle(ctype.decode("latin-1"), declared, receive)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await self.api(scope, receive, send)


def create_app(predictor: Predictor, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> EdgeInferApp:
    """The ASGI app around one predictor (one bundle, one backend)."""
    started = time.time()
    metrics = ServiceMetrics(predictor.backend, predictor.bundle.run_id)
    handler = InferHandler(predictor, metrics, max_body_bytes)
    api = FastAPI(
        title="workbench EdgeInfer service",
        version="1",
        description=f"run {predictor.bundle.run_id}, backend {predictor.backend}",
    )
    api.state.predictor = predictor
    api.state.metrics = metrics

    @api.post(
        "/infer",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["windows"],
                            "properties": {"windows": {"type": "array", "description": predictor.expected}},
                        }
                    },
                    "application/octet-stream": {
                        "schema": {
                            "type": "string",
                            "format": "binary",
                            "description": ".npy file of " + predictor.expected,
                        }
                    },
                },
            }
        },
    )
    async def infer(request: Request) -> Response:
        """Documented here; served by EdgeInferApp's direct route (the same InferHandler)."""
        status, payload = await handler.handle(
            request.headers.get("content-type", ""),
            (request.headers.get("content-length") or "").encode() or None,
            request.receive,
        )
        return Response(payload, status_code=status, media_type="application/json")

    @api.get("/healthz")
    async def healthz() -> Response:
        metrics.request("/healthz", 200)
        return _json({"status": "ok", **predictor.describe(), "uptime_s": round(time.time() - started, 3)})

    @api.get("/metrics")
    async def prometheus() -> Response:
        metrics.request("/metrics", 200)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return EdgeInferApp(api, handler)


def serve(
    bundle_path: str,
    backend: str = "auto",
    host: str = "127.0.0.1",
    port: int = 9000,
    max_windows: Optional[int] = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log=print,
) -> None:
    """Verify the bundle, open the backend, and serve until interrupted. A bundle that fails
    verification raises :class:`~workbench.deploy.bundle.BundleError` before anything listens."""
    import uvicorn

    from workbench.deploy.bundle import load_bundle
    from workbench.deploy.predictor import DEFAULT_MAX_WINDOWS

    bundle = load_bundle(bundle_path)
    predictor = Predictor(bundle, backend, max_windows=max_windows or DEFAULT_MAX_WINDOWS)
    app = create_app(predictor, max_body_bytes=max_body_bytes)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(
            f"warning: listening on {host}, reachable from other machines; put a reverse proxy with "
            f"authentication and a firewall in front (README, Deploy)"
        )
    log(
        f"serving run {bundle.run_id} with {predictor.backend} ({predictor.backend_reason}) on "
        f"http://{host}:{port}  (POST /infer, GET /healthz, GET /metrics)",
        flush=True,
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        predictor.close()
