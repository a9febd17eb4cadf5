"""Error hierarchy: one root, narrow subclasses that also inherit a built-in.

Every message says what is wrong, which file, and how to fix it; the CLI prints it on
one line and exits non-zero, the service maps it to an HTTP error.
"""

from __future__ import annotations


class ImpactsError(Exception):
    """Root of every error this project raises on purpose."""


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


class ReviewError(ImpactsError, ValueError):
    """A review action is invalid: unknown decision or reason, weak password, duplicate analyst.

    ``http_status`` is the status the service answers with.
    """

    http_status = 400


class ReviewNotFoundError(ReviewError, LookupError):
    """A detection or analyst does not exist in the review store."""

    http_status = 404


class ReviewAuthError(ReviewError, PermissionError):
    """Wrong credentials, an unknown or expired session, or a failed CSRF check."""

    http_status = 403


class ReviewDatabaseError(ImpactsError, OSError):
    """The review database cannot be opened, reached or migrated.

    The message names the database (for the log); callers of the service read only
    ``public_message`` and a request id.
    """

    http_status = 503
    public_message = "the review database is unavailable; retry later"


class DetectionImportError(ImpactsError, ValueError):
    """A detections file (``impacts predict`` GeoJSON) cannot be imported for review."""

    http_status = 400
