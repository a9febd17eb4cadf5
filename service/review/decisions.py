"""Decisions on detections and their audit: the part of :class:`~service.review.store.ReviewStore`
that records what analysts decide.

Rules: a detection with no live decision is ``pending``; when its live decisions agree it
has that status, when analysts disagree it is ``conflict`` (every decision is kept). An
analyst deciding again replaces their own live decision (the old one stays, ended as
``replaced``); deciding the same again changes nothing. :meth:`DecisionsMixin.undo`
withdraws the analyst's most recent live decision and brings back the one it replaced, if
any. Every change writes one audit row with the state before and after. PostgreSQL writes
lock the analyst's row, then the detection's (``FOR NO KEY UPDATE``), so two analysts
deciding on one detection both land and the status reflects both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from impacts.errors import ReviewError, ReviewNotFoundError
from service.review.models import DECISIONS, REASONS, Analyst, AuditEntry, Decision, DetectionRow
from service.review.schemas import AuditOut, DecisionOut, decision_dict, decision_out, status_of

MAX_NOTE_CHARS = 2000


class DecisionsMixin(ABC):
    """Decide, undo, list decisions and audit history; the store provides ``_tx`` and ``_clock``."""

    _clock: Callable[[], datetime]

    @abstractmethod
    def _tx(self, write: bool) -> AbstractContextManager[Session]:
        """A session in one transaction, on the writer engine when ``write``."""

    def _lock_analyst(self, s: Session, name: str) -> Analyst:
        row = s.scalars(select(Analyst).where(Analyst.name == name).with_for_update(key_share=True)).first()
        if row is None:
            raise ReviewNotFoundError(
                f"analyst {name!r} does not exist; add it: impacts review users add {name}"
            )
        return row

    def _restatus(self, s: Session, detection: DetectionRow) -> str:
        kinds = s.scalars(
            select(Decision.decision).where(Decision.detection_id == detection.id, Decision.live)
        )
        detection.status = status_of(list(kinds))
        return detection.status

    def decide(
        self, detection_id: int, analyst: str, decision: str, reason: str | None, note: str | None
    ) -> DecisionOut:
        """Record an analyst's decision, replacing their own earlier one on the detection.

        Args:
            detection_id: The detection.
            analyst: Who decides (the session's analyst, never taken from a request body).
            decision: ``accept``, ``reject`` or ``unsure``.
            reason: Required with ``reject`` (crater, shadow, nodata_border, artefact, other);
                must be None otherwise.
            note: Optional free text (at most 2000 characters).

        Returns:
            The live decision, with the detection's new status.

        Raises:
            ReviewError: Invalid decision, reason or note.
            ReviewNotFoundError: Unknown detection or analyst.
        """
        if decision not in DECISIONS:
            raise ReviewError(f"decision {decision!r} unknown; use one of {', '.join(DECISIONS)}")
        if decision == "reject" and reason not in REASONS:
            raise ReviewError(f"a rejection needs a reason, one of {', '.join(REASONS)} (got {reason!r})")
        if decision != "reject" and reason is not None:
            raise ReviewError(f"only a rejection takes a reason; send no reason with {decision!r}")
        note = (note or "").strip() or None
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise ReviewError(f"note of {len(note)} characters; keep it under {MAX_NOTE_CHARS}")
        with self._tx(write=True) as s:
            who = self._lock_analyst(s, analyst)
            detection = s.scalars(
                select(DetectionRow).where(DetectionRow.id == detection_id).with_for_update(key_share=True)
            ).first()
            if detection is None:
                raise ReviewNotFoundError(
                    f"detection {detection_id} does not exist; list them with the queue"
                )
            old = s.scalars(
                select(Decision).where(
                    Decision.detection_id == detection_id, Decision.analyst_id == who.id, Decision.live
                )
            ).first()
            if old is not None and (old.decision, old.reason, old.note) == (decision, reason, note):
                return decision_out(old, analyst, detection.status)
            now, status_before = self._clock(), detection.status
            if old is not None:
                old.live, old.ended_at, old.ended_by = False, now, "replaced"
                s.flush()  # the old one must stop being live before the new one is
            new = Decision(
                detection_id=detection_id,
                analyst_id=who.id,
                decision=decision,
                reason=reason,
                note=note,
                at=now,
                live=True,
                replaces_id=old.id if old else None,
            )
            s.add(new)
            s.flush()
            status = self._restatus(s, detection)
            s.add(
                AuditEntry(
                    at=now,
                    analyst=analyst,
                    action="replace" if old else "decide",
                    detection_id=detection_id,
                    before={"status": status_before, "decision": decision_dict(old, analyst)},
                    after={"status": status, "decision": decision_dict(new, analyst)},
                )
            )
            return decision_out(new, analyst, status)

    def undo(self, analyst: str) -> DecisionOut | None:
        """Withdraw the analyst's most recent live decision, bringing back the one it replaced.

        Returns:
            The withdrawn decision (no longer live), or None when there is nothing to undo.

        Raises:
            ReviewNotFoundError: Unknown analyst.
        """
        with self._tx(write=True) as s:
            who = self._lock_analyst(s, analyst)
            last = s.scalars(
                select(Decision)
                .where(Decision.analyst_id == who.id, Decision.live)
                .order_by(Decision.id.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            detection = s.scalars(
                select(DetectionRow)
                .where(DetectionRow.id == last.detection_id)
                .with_for_update(key_share=True)
            ).one()
            now, status_before = self._clock(), detection.status
            last.live, last.ended_at, last.ended_by = False, now, "undone"
            s.flush()
            restored = s.get(Decision, last.replaces_id) if last.replaces_id is not None else None
            if restored is not None:
                restored.live, restored.ended_at, restored.ended_by = True, None, None
                s.flush()
            status = self._restatus(s, detection)
            s.add(
                AuditEntry(
                    at=now,
                    analyst=analyst,
                    action="undo",
                    detection_id=detection.id,
                    before={"status": status_before, "decision": decision_dict(last, analyst)},
                    after={"status": status, "decision": decision_dict(restored, analyst)},
                )
            )
            return decision_out(last, analyst, status)

    def decisions(self, detection_id: int) -> list[DecisionOut]:
        """Every decision on a detection, live and ended, oldest first."""
        with self._tx(write=False) as s:
            status = s.scalar(select(DetectionRow.status).where(DetectionRow.id == detection_id))
            if status is None:
                raise ReviewNotFoundError(
                    f"detection {detection_id} does not exist; list them with the queue"
                )
            rows = s.execute(
                select(Decision, Analyst.name)
                .join(Analyst, Analyst.id == Decision.analyst_id)
                .where(Decision.detection_id == detection_id)
                .order_by(Decision.id)
            )
            return [decision_out(d, name, status) for d, name in rows]

    def history(self, detection_id: int) -> list[AuditOut]:
        """The audit rows of a detection, oldest first.

        Raises:
            ReviewNotFoundError: No such detection.
        """
        with self._tx(write=False) as s:
            if s.get(DetectionRow, detection_id) is None:
                raise ReviewNotFoundError(
                    f"detection {detection_id} does not exist; list them with the queue"
                )
            rows = s.scalars(
                select(AuditEntry).where(AuditEntry.detection_id == detection_id).order_by(AuditEntry.id)
            )
            return [AuditOut.model_validate(r, from_attributes=True) for r in rows]
