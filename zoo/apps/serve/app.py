"""The server's FastAPI app: ``POST /v1/embeddings`` (OpenAI's request and response), ``GET /v1/models``,
``GET /health``, ``GET /metrics``.

A request goes: the body read within its size cap and parsed (:mod:`.protocol`); the model taken from the pool
(loaded on first use, :mod:`.models`); media decoded in a thread pool (:mod:`.decode`); the items queued for the
model's batcher (:mod:`.batcher`), which embeds them with other requests' in one ``embed`` call; the vectors
written back as floats or base64, with the space they are in (``X-Zoo-Space`` header and ``extra.space``).
Every failure is an OpenAI-shaped error body with the HTTP status that says whose fault it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from zoo.apps.serve.batcher import QueueFull
from zoo.apps.serve.decode import decode_items
from zoo.apps.serve.metrics import Metrics
from zoo.apps.serve.models import ModelPool
from zoo.apps.serve.protocol import RequestError, error_body, parse_request, response_body
from zoo.apps.serve.settings import ServeSettings
from zoo.errors import InputTooLargeError, InvalidInputError, WeightsUnavailableError, ZooError

log = logging.getLogger("zoo.serve")
#: Header that carries the embedding space of the vectors in a response.
SPACE_HEADER = "X-Zoo-Space"


def create_app(models: list[str] | tuple[str, ...] = (), settings: ServeSettings | None = None, *,
               pool: ModelPool | None = None, preload: bool = False):
    """The app serving ``models`` (empty: any registered model), or the given ``pool``'s; ``preload`` loads
    ``models`` now instead of on their first request."""
    settings = settings or ServeSettings()
    metrics: Metrics | None = None

    def on_batch(name: str, jobs: int, items: int) -> None:
        metrics.batch(name, jobs, items)

    arriving = _Counter()  # requests between their start and their place in a queue
    pool = pool or ModelPool(models, memory_budget=settings.memory_budget, max_wait=settings.max_wait,
                             max_queued=settings.max_queued, batching=settings.batching, on_batch=on_batch,
                             arriving=arriving.value)
    metrics = Metrics(pool.depths)
    decoders = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="zoo-serve-decode")
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pool.close()
        decoders.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="embedding-zoo", summary="OpenAI-compatible embeddings for every modality",
                  docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.pool, app.state.settings, app.state.metrics = pool, settings, metrics
    if preload:
        for name in models:
            pool.get(name)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        metrics.errors.labels(exc.code or exc.kind).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    def authorize(request: Request) -> None:
        if not settings.api_keys:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(given.encode(), k.encode())
                                                 for k in settings.api_keys):
            raise RequestError(401, "a valid API key is required (Authorization: Bearer <key>)",
                               kind="authentication_error", code="invalid_api_key",
                               headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health():
        return {"status": "ok", "loaded": pool.loaded(), "pid": os.getpid()}

    @app.get("/metrics")
    async def prometheus(request: Request):
        authorize(request)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def list_models(request: Request):
        authorize(request)
        loaded = set(pool.loaded())
        data = []
        for name in pool.listed():
            card = pool.card(name)
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "embedding-zoo",
                         "extra": {"space": card.space, "dim": card.dim, "modalities": list(card.modalities),
                                   "matryoshka_dims": list(card.matryoshka_dims), "loaded": name in loaded}})
        return {"object": "list", "data": data}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        authorize(request)
        started = time.monotonic()
        model_name = "-"
        arriving.add(1)
        try:
            body = await _read_json(request, settings.max_body_bytes)
            req = parse_request(body, max_items=settings.max_items, max_media_bytes=settings.max_media_bytes)
            pool.card(req.model)  # 404 before any loading
            model_name = req.model  # a label only for names served (unknown names would grow the metrics)
            answer = await _embed(req)
        except RequestError as exc:
            metrics.requests.labels(model_name, str(exc.status)).inc()
            raise
        finally:
            arriving.settle()
        metrics.requests.labels(model_name, "200").inc()
        metrics.latency.labels(model_name).observe(time.monotonic() - started)
        return answer

    async def _embed(req) -> Any:
        loop = asyncio.get_running_loop()
        try:
            served = pool.loaded_model(req.model) or await loop.run_in_executor(None, pool.get, req.model)
        except ZooError as exc:  # weights not on this machine, a card that does not load
            code = "weights_unavailable" if isinstance(exc, WeightsUnavailableError) else "model_unavailable"
            raise RequestError(503, str(exc), param="model", code=code, kind="server_error") from None
        model = served.model
        options = _options(req, model)
        try:
            items = await loop.run_in_executor(decoders, decode_items, req.items) if req.has_media else req.items
        except InvalidInputError as exc:
            raise _item_error(exc) from None
        cost = sum(len(t) // 4 + 2 for t in items if isinstance(t, str)) if served.priced_in_tokens else len(items)
        try:
            future = served.batcher.submit(items, options, cost)
            arriving.add(-1)  # queued: no longer on its way
        except QueueFull as exc:
            raise RequestError(503, f"the server is busy: {exc}; retry shortly", kind="server_error",
                               code="queue_full", headers={"Retry-After": "1"}) from None
        wrapped = asyncio.wrap_future(future)
        try:
            out, tokens = await asyncio.wait_for(wrapped, settings.request_timeout)
        except TimeoutError:
            future.cancel()
            raise RequestError(504, f"no answer within {settings.request_timeout:g} s", kind="server_error",
                               code="timeout") from None
        except InvalidInputError as exc:
            raise _item_error(exc) from None
        except ZooError as exc:
            raise RequestError(400, str(exc), param=None) from None
        except Exception:
            log.exception("embedding failed")
            raise RequestError(500, "the model failed on this request", kind="server_error",
                               code="internal_error") from None
        metrics.items.labels(req.model, out.modality).inc(len(req.items))
        body = response_body(req.model, out.vectors, encoding_format=req.encoding_format, prompt_tokens=tokens,
                             space=out.space, dim=out.dim, modality=out.modality)
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json",
                        headers={SPACE_HEADER: out.space})

    return app


class _Counter:
    """Requests on their way to a queue. Each request adds 1 at its start and -1 once queued; ``settle`` at its end
    takes back what it still holds. Counted per event-loop task, so no lock is needed; read from the workers."""

    def __init__(self):
        self._value = 0
        self._held: dict[int, int] = {}

    def add(self, n: int) -> None:
        task = id(asyncio.current_task())
        self._held[task] = self._held.get(task, 0) + n
        self._value += n

    def settle(self) -> None:
        self._value -= self._held.pop(id(asyncio.current_task()), 0)

    def value(self) -> int:
        return self._value


def _options(req, model) -> dict[str, Any]:
    """The ``embed`` keywords of a request (only those it sets, so the call is the plain one otherwise)."""
    card = model.card
    modalities = list(card.modalities)
    explicit = req.extra.get("modality")
    if explicit is not None and explicit not in modalities:
        raise RequestError(400, f"{card.name} embeds {', '.join(modalities)}, not {explicit!r}",
                           param="extra.modality")
    modality = explicit or (req.modality if req.modality in modalities else None)
    if modality is None and not (req.modality == "text" and "code" in modalities):  # code models take strings
        raise RequestError(400, f"{card.name} embeds {', '.join(modalities)}; this input is {req.modality}",
                           param="input")
    if req.dimensions is not None:
        mrl = card.matryoshka_dims
        if not mrl:
            raise RequestError(400, f"{card.name} was not trained for Matryoshka truncation: 'dimensions' is not "
                               f"accepted (its vectors have {card.dim})", param="dimensions")
        if not mrl[0] <= req.dimensions <= mrl[-1]:
            raise RequestError(400, f"{card.name} takes dimensions {mrl[0]}..{mrl[-1]}, not {req.dimensions}",
                               param="dimensions")
    options = {"modality": modality, "task_instruction": req.extra.get("task_instruction"),
               "prompt_name": req.extra.get("prompt_name"), "dim": req.dimensions}
    return {k: v for k, v in options.items() if v is not None}


def _item_error(exc: InvalidInputError) -> RequestError:
    param = f"input[{exc.index}]" if exc.index is not None else None
    code = "input_too_large" if isinstance(exc, InputTooLargeError) else "invalid_input"
    return RequestError(400, str(exc), param=param, code=code)


async def _read_json(request, limit: int) -> Any:
    """The request body as JSON, read no further than ``limit`` bytes (413 past it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request body of {int(declared):,} bytes is over the limit of {limit:,}",
                           param=None, code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is over the limit of {limit:,} bytes", param=None,
                               code="body_too_large")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}", param=None) from None


__all__ = ["SPACE_HEADER", "create_app", "error_body"]
