"""Typed configs: pydantic models loaded from YAML, overridable with ``key=value`` strings.

``load_config(path, Model, ["train.epochs=3"])`` reads the YAML file (or starts from the
model's defaults when ``path`` is None), applies the overrides on the nested dict, and
validates the result with ``extra="forbid"`` so a typo is an error, not a silent default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from impacts.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value.

    Args:
        text: The override as typed on the command line.

    Returns:
        The dotted key split into parts, and the value parsed as YAML (so ``3`` is an int,
        ``[a, b]`` a list, ``null`` None).

    Raises:
        ConfigError: The text has no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE; write e.g. --set seed=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override set (nested keys by dots).

    Args:
        data: The config as a nested dict.
        overrides: Strings such as ``split.test_fraction=0.25``.

    Returns:
        A new nested dict.

    Raises:
        ConfigError: An override is malformed or walks into a non-mapping value.
    """
    result: dict[str, Any] = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return result


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_config(path: str | Path | None, model: type[ModelT], overrides: list[str] | None = None) -> ModelT:
    """Load a YAML config into ``model``, apply overrides and validate.

    Args:
        path: YAML file, or None to start from the model's defaults.
        model: The pydantic model class.
        overrides: ``key=value`` strings applied after the file.

    Returns:
        The validated config.

    Raises:
        ConfigError: The file is missing or not YAML, or validation fails; the message
            names the file and every offending key.
    """
    data: dict[str, Any] = {}
    source = "built-in defaults" if path is None else str(path)
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} not found; pass an existing YAML file")
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
        data = loaded
    data = apply_overrides(data, overrides or [])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"config ({source} with {len(overrides or [])} --set overrides) is invalid: {problems}; "
            f"fix the value or key (valid keys are listed in configs/*.yaml)"
        ) from exc


def dump_config(config: BaseModel) -> str:
    """Render a config as YAML, in field order, ready to be saved beside outputs."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
