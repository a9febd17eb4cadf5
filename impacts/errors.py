"""Error hierarchy: one root, narrow subclasses that also inherit a built-in.

Every message says what is wrong, which file, and how to fix it; the CLI prints it on
one line and exits non-zero. Each type knows the HTTP status the service answers it with
(``http_status``); the service has one handler for them all (``service.guard``). A 5xx
answer shows callers ``public_message`` (or a generic text), never the message itself,
which may name files, URLs or hosts: that goes to the log.

The one error type that lives elsewhere is the service's ``BodyTooLargeError``
(``service/guard.py``): FastAPI lets only its own ``HTTPException`` through body parsing.
"""

from __future__ import annotations


class ImpactsError(Exception):
    """Root of every error this project raises on purpose."""

    #: The status the service answers with.
    http_status: int = 400
    #: For a 5xx: what a caller of the service reads (None: a generic text).
    public_message: str | None = None


class ConfigError(ImpactsError, ValueError):
    """A config file or a ``--set`` override is invalid."""


class SceneError(ImpactsError, ValueError):
    """A scene (image/mask pair) cannot be used as it is."""


class SceneNotFoundError(SceneError, FileNotFoundError):
    """A scene file or folder does not exist, or a folder holds no scene."""


class MaskMissingError(SceneError, FileNotFoundError):
    """A scene has no ``NAME_mask.tif`` beside it."""


class GridMismatchError(SceneError):
    """The mask is not on the image's grid (size, transform or CRS differ)."""


class RasterFormatError(SceneError):
    """A raster has the wrong band count or data type."""


class CorruptRasterError(SceneError, OSError):
    """A raster cannot be decoded (truncated, corrupt, not a raster)."""


class PatchSetError(ImpactsError, ValueError):
    """A patch set (shards + manifest) is missing, incomplete or inconsistent."""


class BundleError(ImpactsError, FileNotFoundError):
    """A model bundle is missing, incomplete, or written by an incompatible version."""


class RunFolderError(ImpactsError, ValueError):
    """A training run folder (``impacts train --out``) cannot be resumed as it is."""


class ReviewError(ImpactsError, ValueError):
    """A review action is invalid: unknown decision or reason, weak password, duplicate analyst."""


class ReviewNotFoundError(ReviewError, LookupError):
    """A detection or analyst does not exist in the review store."""

    http_status = 404


class ReviewAuthError(ReviewError, PermissionError):
    """A credential is wrong: a failed CSRF check, an unknown or revoked API token."""

    http_status = 403


class LoginRequiredError(ReviewAuthError):
    """No credential: no session (or it expired), no API token."""

    http_status = 401


class ReviewDatabaseError(ImpactsError, OSError):
    """The review database cannot be opened, reached or migrated.

    The message names the database (for the log); callers of the service read only
    ``public_message`` and a request id.
    """

    http_status = 503
    public_message = "the review database is unavailable; retry later"


class DetectionImportError(ImpactsError, ValueError):
    """A detections file (``impacts predict`` GeoJSON) cannot be imported for review."""


class SceneNameError(ImpactsError, ValueError):
    """A scene name is not a plain name (it could name a path, or collide with a file role)."""

    http_status = 422


class TileError(ImpactsError, ValueError):
    """An uploaded tile cannot be used; its HTTP status depends on why (400 corrupt, 413 too
    large, 415 not an image, 422 unsupported content)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status

    @property
    def status(self) -> int:
        """The HTTP status (same as ``http_status``)."""
        return self.http_status


class ServiceUnavailableError(ImpactsError, RuntimeError):
    """The service cannot take the request now; retry after ``retry_after_s``."""

    http_status = 503
    retry_after_s = 1


class NotReadyError(ServiceUnavailableError):
    """The model is not loaded yet."""

    public_message = "the model is still loading; retry when /readyz answers 200"


class SaturatedError(ServiceUnavailableError):
    """Too many windows are waiting; try again later."""

    public_message = "the service is saturated (too many windows waiting); retry shortly"
