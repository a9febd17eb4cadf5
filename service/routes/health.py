"""Liveness, readiness, the loaded model and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from service.state import ServiceDep

router = APIRouter()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The model is loaded", responses={503: {"description": "Not ready"}})
async def readyz(state: ServiceDep) -> JSONResponse:
    ready = state.predictor is not None
    return JSONResponse(
        {"ready": ready, "model_version": state.bundle.version if ready else None}, 200 if ready else 503
    )


@router.get(
    "/v1/model",
    summary="Version, config and metrics of the loaded bundle",
    responses={503: {"description": "Not ready"}},
)
async def model_info(state: ServiceDep) -> dict[str, Any]:
    state.require_ready()
    return {
        "version": state.bundle.version,
        "config": state.bundle.config.model_dump(mode="json"),
        "metrics": state.bundle.metrics,
    }


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(state: ServiceDep) -> str:
    return state.metrics.render(state.predictor.waiting if state.predictor else 0)
