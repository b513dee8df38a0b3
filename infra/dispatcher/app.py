"""The online HTTP API (Starlette, served by uvicorn): POST /v1/embeddings, GET /healthz, and
GET /openapi.json. Thin: parse, delegate to the OnlineService, answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from buffers.gears import gears_from_plan
from buffers.plan import Plan
from buffers.types import ServiceTime
from functions.embed import MODEL_ID, STAND_IN_ID, model_id
from functions.shared.encoder_dir import model_name, read_encoder_spec
from functions.shared.model import StandInEmbedder, get_embedder
from functions.shared.tokenizer import default_model_dir
from infra.dispatcher.admission import DEFAULT_MAX_LOOP_LAG_MS
from infra.dispatcher.errors import ApiError
from infra.dispatcher.fleet_scaling import FleetScaler, LocalFleetScaler
from infra.dispatcher.inputs import prepare_inputs
from infra.dispatcher.invoke import InProcessInvoker, Invoker
from infra.dispatcher.openai_schema import MAX_BODY_BYTES, parse_embedding_request, too_large
from infra.dispatcher.openapi_doc import openapi_document
from infra.dispatcher.responses import embedding_response, response_bytes
from infra.dispatcher.service import OnlineService

log = logging.getLogger("mbs.dispatcher")
# Bodies past this are tokenized in a worker thread, so a 1 MiB request does not stall the
# event loop (and every other caller's timers) for the tens of milliseconds it takes.
INLINE_TOKENIZE_BYTES = 64 * 1024


class ModelChoice(StrEnum):
    MINILM = "minilm"
    STAND_IN = "stand-in"  # hash vectors for load tests of the service, reported as "stand-in"


@dataclass(frozen=True)
class ServedModel:
    name: str  # what responses report
    aliases: tuple[str, ...]  # what `model` in a request may say
    directory: Path | None = None  # a local encoder directory (--model DIR), else the choice's


SERVED = {
    ModelChoice.MINILM: ServedModel(MODEL_ID, (MODEL_ID, f"sentence-transformers/{MODEL_ID}")),
    ModelChoice.STAND_IN: ServedModel(STAND_IN_ID, (STAND_IN_ID,)),
}


def served_model(model: str) -> ServedModel:
    """"minilm", "stand-in", or a local sentence-transformers encoder directory's path."""
    if model in set(ModelChoice):
        return SERVED[ModelChoice(model)]
    directory = Path(model)
    if not directory.is_dir():
        raise ValueError(f"model must be one of {[c.value for c in ModelChoice]} or an encoder "
                         f"directory, got {model!r}")
    read_encoder_spec(directory)  # an unusable directory fails here, naming the file
    name = model_name(directory, default_model_dir())
    return ServedModel(name, tuple(dict.fromkeys((name, str(directory)))), directory)


def in_process_invoker(model: str) -> InProcessInvoker:
    """The model held by this process: the real one (one per process), or the stand-in.

    A directory is served by this process's model port, so MBS_MODEL_DIR must name it (the
    tokenizer that counts and cuts inputs reads the same variable): `mbs serve --model DIR`
    sets it.
    """
    served = served_model(model)
    embedder = StandInEmbedder() if model == ModelChoice.STAND_IN else get_embedder()
    if model_id(embedder) != served.name:  # MBS_STANDIN_MODEL=1 swaps get_embedder's
        raise ValueError(f"model {model!r} asked for, but this process's model port serves "
                         f"{model_id(embedder)!r} (is MBS_STANDIN_MODEL set, or MBS_MODEL_DIR "
                         "not the directory?)")
    return InProcessInvoker(embedder)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large(int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


async def _on_api_error(_: Request, exc: ApiError) -> JSONResponse:
    return _error_response(exc)


async def _on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error_response(ApiError(exc.status_code, code, f"{exc.detail}: {request.method} "
                                    f"{request.url.path}"))


async def _on_crash(_: Request, exc: Exception) -> JSONResponse:
    log.error("request failed: %r", exc)
    return _error_response(ApiError(500, "internal_error", "the service failed this request; "
                                    "it has been logged"))


def create_app(plan: Plan, *, model: str = ModelChoice.MINILM, invoker: Invoker | None = None,
               policy: str | None = None, predict_ms: ServiceTime | None = None,
               slo_ms: float | None = None, max_waiting_inputs: int | None = None,
               max_loop_lag_ms: float | None = DEFAULT_MAX_LOOP_LAG_MS,
               extra_routes: Sequence[BaseRoute] = (),
               fleet_scaler: FleetScaler | None = None) -> Starlette:
    """The ASGI app serving `plan`.

    Parameters: `model` is "minilm", "stand-in" or an encoder directory (served_model);
    `invoker` defaults to the model in this
    process; `policy` overrides the plan's (the deadline policy needs `predict_ms`); `slo_ms`
    gives every request a deadline; `max_waiting_inputs` bounds the admission queue (default
    admission.default_queue_limit); past `max_loop_lag_ms` of event-loop lateness requests are
    refused too (None: never); `extra_routes` are served beside (the local stack's bulk API).
    Gears come from the plan's meta, if it has them; a gpu plan's gears set its fleet's bounds
    through `fleet_scaler` (default: LocalFleetScaler, which only records them: no fleet runs
    beside this process).
    """
    served = served_model(model)
    invoker = invoker or in_process_invoker(model)
    service = OnlineService(plan, invoker, served.name, policy=policy, predict_ms=predict_ms,
                            slo_ms=slo_ms, gears=gears_from_plan(plan),
                            max_waiting_inputs=max_waiting_inputs,
                            max_loop_lag_ms=max_loop_lag_ms,
                            fleet_scaler=fleet_scaler or LocalFleetScaler())
    document = openapi_document(served.aliases)

    async def embeddings(request: Request) -> JSONResponse:
        body = await _read_body(request)
        parsed = parse_embedding_request(body, request.headers.get("content-type"),
                                         served.aliases)
        service.check_admission(len(parsed.inputs))  # refuse before paying to tokenize
        prepared = prepare_inputs(parsed.inputs) if len(body) <= INLINE_TOKENIZE_BYTES \
            else await asyncio.to_thread(prepare_inputs, parsed.inputs)
        results = await service.embed(prepared, parsed.user)
        body = embedding_response(results, prepared, served.name, parsed.encoding_format)
        return Response(response_bytes(body), media_type="application/json")

    async def health(_: Request) -> JSONResponse:
        status = 503 if service.draining else 200
        return JSONResponse({"status": "draining" if service.draining else "ok",
                             "model": served.name, "plan": plan.name, **service.snapshot()},
                            status_code=status)

    async def openapi(_: Request) -> JSONResponse:
        return JSONResponse(document)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(invoker.warm_up)
        await service.start()
        yield
        await service.stop()

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"]),
                            Route("/healthz", health, methods=["GET"]),
                            Route("/openapi.json", openapi, methods=["GET"]),
                            *extra_routes],
                    exception_handlers={ApiError: _on_api_error, HTTPException: _on_http_error,
                                        Exception: _on_crash},
                    lifespan=lifespan)
    app.state.service = service
    return app
