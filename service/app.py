"""The FastAPI app: tile prediction with micro-batching, health, readiness, metrics, and
the review UI and its API.

``create_app(settings)`` assembles the module-level routers (``service.routes``,
``service.review``), the outer guard (request ids, body limits, metrics) and the one
handler of the project's errors; the model bundle is loaded in the lifespan, so importing
this module loads nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from impacts.errors import ImpactsError
from service.guard import Guard, impacts_error_answer
from service.predictor import BatchingPredictor
from service.review.settings import ReviewSettings
from service.routes import health, predict
from service.settings import Settings
from service.state import State

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, review: ReviewSettings | None = None) -> FastAPI:
    """Build the app; the bundle at ``settings.model_path`` loads when the app starts.

    The review UI and its API (``service.review``) are part of it unless
    ``review.enabled`` is false; their store opens on first use."""
    state = State(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from training.bundle import load_bundle
        from training.inference import keras_predictor

        state.bundle = await asyncio.to_thread(load_bundle, state.settings.model_path)
        s = state.settings
        state.predictor = BatchingPredictor(
            keras_predictor(state.bundle.model), s.batch_max, s.batch_wait_ms, s.queue_max, s.batching
        )
        state.predictor.stats.on_batch = state.metrics.batch.observe
        await state.predictor.start()
        log.info("model %s loaded from %s", state.bundle.version, s.model_path)
        yield
        await state.predictor.stop()
        state.request_threads.shutdown(wait=False)

    app = FastAPI(
        title="mars-impacts",
        version="0.1.0",
        lifespan=lifespan,
        description="Fresh impact detection on Mars orbital image tiles.",
    )
    app.state.impacts = state
    app.include_router(health.router)
    app.include_router(predict.router)
    from service.review.routes import install_review  # SQLAlchemy is imported only here

    state.review = install_review(app, review or ReviewSettings())
    app.add_middleware(Guard, metrics=state.metrics, body_limit=state.settings.body_limit)
    app.add_exception_handler(ImpactsError, impacts_error_answer)
    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn (``--factory``): settings from ``IMPACTS_*`` variables."""
    return create_app(Settings())
