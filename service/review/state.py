"""What an app keeps for the review: the store, opened on first use, and the failed-login limiter."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from service.review.migrations import redact
from service.review.settings import ReviewSettings
from service.review.store import ReviewStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """A login attempt under way: the keys it counts against and when it began."""

    keys: tuple[str, ...]
    at: float
    wait_s: float  # > 0: refused, retry after this many seconds


class LoginLimiter:
    """Failed logins per client address and per account name, in a sliding window (in this
    process: with several workers each holds its own count).

    An attempt is counted as a failure when it begins (:meth:`begin`) and forgiven when the
    password proves right (:meth:`forgive`), so concurrent attempts cannot all pass the limit
    while the slow password checks run. Unknown names are counted like known ones (the
    answer never tells which names exist). At most ``max_keys`` keys are remembered: past
    that, the keys that failed least recently are forgotten first.
    """

    def __init__(self, max_failures: int, window_s: float, max_keys: int = 100_000) -> None:
        self.max_failures, self.window_s, self.max_keys = max_failures, window_s, max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # least recently failed first
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def begin(self, address: str, name: str) -> Attempt:
        """Start a login attempt from ``address`` for the account ``name``.

        Returns:
            The attempt; its ``wait_s`` > 0 when the address or the account is over the limit
            (then nothing is counted and the password must not be checked).
        """
        keys = (f"address:{address}", f"account:{name}")
        now = time.monotonic()
        with self._lock:
            recent = [self._recent(key, now) for key in keys]
            full = [times for times in recent if len(times) >= self.max_failures]
            if full:
                return Attempt(keys, now, max(t[-self.max_failures] + self.window_s - now for t in full))
            for key, times in zip(keys, recent, strict=True):
                times.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:  # a flood of new names or addresses
                self._failures.popitem(last=False)
        return Attempt(keys, now, 0.0)

    def forgive(self, attempt: Attempt) -> None:
        """The attempt succeeded: it no longer counts as a failure."""
        with self._lock:
            for key in attempt.keys:
                times = self._failures.get(key)
                if times is not None and attempt.at in times:
                    times.remove(attempt.at)


class ReviewState:
    """The review settings, the store (opened on first use) and the login limiter of one app."""

    def __init__(self, settings: ReviewSettings) -> None:
        self.settings = settings
        self.limiter = LoginLimiter(settings.login_failures_max, settings.login_window_s)
        # scrypt takes 16 MiB and ~50 ms of one core per check. In two threads of their own,
        # a burst of logins queues instead of holding 16 MiB per request thread (glibc keeps
        # such blocks in each thread's arena once its mmap threshold has risen).
        self.password_checks = ThreadPoolExecutor(2, thread_name_prefix="password")
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
                    self.settings.db_url,
                    session_ttl_s=self.settings.session_ttl_s,
                    busy_timeout_s=self.settings.busy_timeout_s,
                )
                log.info("review store open: %s", redact(self.settings.db_url))
            return self._store

    def authenticate(self, name: str, password: str) -> bool:
        """Check a login in one of the password-check threads (see ``password_checks``).

        Raises:
            ReviewDatabaseError: The database cannot be reached.
        """
        return self.password_checks.submit(self.store().authenticate, name, password).result()

    def close(self) -> None:
        """Close the store if it was opened."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
