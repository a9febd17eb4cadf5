"""What one app of the service holds (settings, metrics, the model and its batching
predictor, the request threads, the review) and the dependency routes take it through."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from impacts.errors import NotReadyError, ReviewError
from service.metrics import Metrics
from service.predictor import BatchingPredictor
from service.settings import Settings

if TYPE_CHECKING:
    from service.review.state import ReviewState


class State:
    """What the lifespan sets up (``app.state.impacts``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.bundle: Any = None
        self.predictor: BatchingPredictor | None = None
        # Request handlers mostly wait for their windows; the default pool (cores + 4
        # threads) would cap how many requests can have windows queued, and so the batch size.
        self.request_threads = ThreadPoolExecutor(
            max_workers=max(8, 4 * settings.batch_max), thread_name_prefix="request"
        )
        # ...but only a few of them work on pixels at once (see ``Settings.cpu_slots``): results
        # then go out one after another instead of all late together, which also brings the
        # next requests' windows to the model sooner.
        self.cpu_slots = threading.BoundedSemaphore(settings.cpu_slots)
        self.review: ReviewState | None = None  # set by service.review.routes.install_review

    def require_ready(self) -> None:
        """Raises:
        NotReadyError: The model is still loading (503 with Retry-After)."""
        if self.predictor is None or self.bundle is None:
            raise NotReadyError("the model is still loading; retry when /readyz answers 200")

    def threshold(self) -> float:
        """The detection threshold: the setting, else the bundle's evaluation threshold."""
        threshold: float = self.settings.threshold or self.bundle.config.evaluation.threshold
        return threshold

    def review_state(self) -> ReviewState:
        """The review state of ``POST /v1/predict?review=true``.

        Raises:
            ReviewError: The review is disabled (``IMPACTS_REVIEW_ENABLED=false``).
        """
        if self.review is None or not self.review.settings.enabled:
            raise ReviewError("review is disabled on this service (IMPACTS_REVIEW_ENABLED=false)")
        return self.review


async def _service_state(request: Request) -> State:  # async: FastAPI runs a sync one in a thread
    state: State = request.app.state.impacts
    return state


ServiceDep = Annotated[State, Depends(_service_state)]
