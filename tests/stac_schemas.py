"""Validate STAC JSON against the official schemas without the network.

The core STAC 1.1 schemas ship inside pystac (``pystac/validation/jsonschemas``); the two
extension schemas we use are vendored in ``tests/data/stac`` (copied unchanged from the
stac-extensions/projection v2.0.0 and stac-extensions/ssys v1.1.0 repositories, Apache-2.0
and public domain). Any other schema URI fails the validation instead of being downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pystac
from pystac.validation import JsonSchemaSTACValidator, validate_dict

SCHEMAS = Path(__file__).parent / "data" / "stac"
EXTENSIONS = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json": SCHEMAS / "projection-v2.0.0.json",
    "https://stac-extensions.github.io/ssys/v1.1.0/schema.json": SCHEMAS / "ssys-v1.1.0.json",
}


class OfflineStacIO(pystac.StacIO):
    """A StacIO that refuses every read: a schema not in the cache fails, never downloads."""

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        raise OSError(f"no network in tests: {source} is not a vendored schema")

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        raise OSError("not used")


def offline_validator() -> JsonSchemaSTACValidator:
    """pystac's JSON-schema validator with the core and our extension schemas preloaded."""
    validator = JsonSchemaSTACValidator()
    for uri, path in EXTENSIONS.items():
        validator.schema_cache[uri] = json.loads(path.read_text())
    return validator


def validate_offline(data: dict[str, Any]) -> list[str]:
    """Validate a STAC Item/Collection dict (core + every extension it lists), offline.

    Returns:
        The schema URIs it was validated against.

    Raises:
        pystac.errors.STACValidationError: It does not conform.
    """
    previous = pystac.StacIO._default_io
    pystac.StacIO.set_default(OfflineStacIO)
    try:
        return validate_dict(data, validator=offline_validator())
    finally:
        pystac.StacIO._default_io = previous
