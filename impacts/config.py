"""Typed configs: pydantic models loaded from YAML, overridable with ``key=value`` strings.

``load_config(path, Model, ["train.epochs=3"])`` reads the YAML file (or starts from the
model's defaults when ``path`` is None), applies the overrides on the nested dict, and
validates the result with ``extra="forbid"`` so a typo is an error, not a silent default.

:func:`validate_config` is the one place where user input (a config file, ``--set``
overrides, command-line options, a bundle's saved config) meets a pydantic model: every
command goes through it, so a bad key or value is one ``ConfigError`` line that names the
key, what is wrong and how to fix it, never a pydantic traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        raise ConfigError(f"override {text!r}: value is not valid YAML ({_yaml_problem(exc)})") from exc
    return key.strip().split("."), value


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: ``line L, column C: problem``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


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
            raise ConfigError(f"config file {file} is not valid YAML: {_yaml_problem(exc)}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
        data = loaded
    return override_config(data, model, overrides, source)


def override_config(
    base: Mapping[str, Any], model: type[ModelT], overrides: list[str] | None, source: str
) -> ModelT:
    """Apply ``key=value`` overrides to settings already at hand (a loaded file, the
    evaluation settings saved in a bundle) and validate them with :func:`validate_config`.

    Args:
        base: The settings as a nested mapping.
        model: The pydantic model class.
        overrides: ``key=value`` strings.
        source: Where ``base`` comes from, e.g. a file name.

    Returns:
        The validated config.

    Raises:
        ConfigError: An override is malformed, or validation fails (the message names the
            source and every offending key).
    """
    data = apply_overrides(dict(base), overrides or [])
    return validate_config(
        model,
        data,
        f"config ({source} with {len(overrides or [])} --set overrides)",
        "fix the value or key (valid keys are listed in configs/*.yaml)",
    )


def validate_config(
    model: type[ModelT],
    data: Any,
    source: str,
    fix: str = "fix the value or key",
    names: Mapping[str, str] | None = None,
) -> ModelT:
    """Validate user input as ``model``; a failure is one ConfigError line, never a traceback.

    Args:
        model: The pydantic model class.
        data: The input, e.g. a nested dict after :func:`apply_overrides`.
        source: What the input is, as the message names it after "invalid" (``config
            (configs/unet.yaml with 2 --set overrides)``, ``predict options``).
        fix: How to fix it, said after the problems.
        names: How to call a top-level key in the message (``{"threshold": "--threshold"}``
            for command-line options); keys not in it are named by their dotted path.

    Returns:
        The validated model.

    Raises:
        ConfigError: Validation failed; the message names the source, every offending key
            with what is wrong and the value given, the valid keys next to an unknown one,
            and ``fix``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, model, source, fix, names) from exc


def config_error(
    exc: ValidationError,
    model: type[BaseModel],
    source: str,
    fix: str = "fix the value or key",
    names: Mapping[str, str] | None = None,
) -> ConfigError:
    """The one-line ConfigError for a pydantic ValidationError (see :func:`validate_config`),
    for models validated another way, e.g. settings read from the environment.

    Args:
        exc: The validation error.
        model: The model that raised it (its fields name the valid keys).
        source: What the input is, named after "invalid".
        fix: How to fix it.
        names: How to call a top-level key in the message (an option or variable name).

    Returns:
        The error to raise (``raise config_error(...) from exc``).
    """
    problems = "; ".join(_problem(model, err, names or {}) for err in exc.errors())
    message = f"invalid {source}: {problems}; {fix}"
    return ConfigError(" ".join(message.split()))  # one line, whatever pydantic says


def _problem(model: type[BaseModel], err: Any, names: Mapping[str, str]) -> str:
    """``key: what is wrong (got VALUE)``, plus the valid keys of its section for an unknown key."""
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "<root>"
    if loc and loc[0] in names:
        key = ".".join([names[loc[0]], *loc[1:]])
    text = f"{key}: {err['msg']}"
    valid = _keys_at(model, loc[:-1]) if err["type"] == "extra_forbidden" else []
    if valid:
        return f"{text} (valid keys{' in ' + '.'.join(loc[:-1]) if loc[:-1] else ''}: {', '.join(valid)})"
    if loc and err["type"] != "missing" and not isinstance(err["input"], dict | list):
        text += f" (got {err['input']!r})"
    return text


def _keys_at(model: type[BaseModel], section: list[str]) -> list[str]:
    """Field names of the (nested) model at ``section``; empty when it is not a model."""
    current = model
    for part in section:
        field = current.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def dump_config(config: BaseModel) -> str:
    """Render a config as YAML, in field order, ready to be saved beside outputs."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
