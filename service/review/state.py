"""What an app keeps for the review: the store, opened on first use, and the failed-login limiter."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque

from service.review.migrations import redact
from service.review.settings import ReviewSettings
from service.review.store import ReviewStore

log = logging.getLogger(__name__)


class LoginLimiter:
    """Counts failed logins per client address in a sliding window (in this process)."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures[address]
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def blocked_for_s(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.max_failures:
                if not times:
                    self._failures.pop(address, None)
                return 0.0
            return times[0] + self.window_s - now

    def failed(self, address: str) -> None:
        """Record one failed login from ``address``."""
        now = time.monotonic()
        with self._lock:
            self._recent(address, now).append(now)


class ReviewState:
    """The review settings, the store (opened on first use) and the login limiter of one app."""

    def __init__(self, settings: ReviewSettings) -> None:
        self.settings = settings
        self.limiter = LoginLimiter(settings.login_failures_max, settings.login_window_s)
        self._store: ReviewStore | None = None
        self._lock = threading.Lock()

    def store(self) -> ReviewStore:
        """The store, opened (and migrated to the newest schema) on the first call.

        Raises:
            ReviewDatabaseError: The database cannot be reached or migrated (answered 503;
                the next request tries again).
        """
        with self._lock:
            if self._store is None:
                self._store = ReviewStore.open(
                    self.settings.db_url, session_ttl_s=self.settings.session_ttl_s
                )
                log.info("review store open: %s", redact(self.settings.db_url))
            return self._store

    def close(self) -> None:
        """Close the store if it was opened."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
