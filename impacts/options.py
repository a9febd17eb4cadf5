"""Every command-line option that more than one ``impacts`` command takes, declared once.

Like rasterio's ``rio/options.py``: a command applies the decorator (or calls the factory
with the one thing that differs between commands, such as what its ``--out`` folder
holds) instead of declaring the option again, so names, types, defaults and the gist of
the help text are the same everywhere. Options that a single command takes stay with that
command. Only click and :mod:`pathlib` are imported: every ``cli.py`` imports this module
when ``impacts --help`` lists the commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from impacts.chunks import Chunking

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB = "sqlite:///review.db"

# -v/-q: the root command's log level (``impacts -v tile ...``).
verbose_option = click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
quiet_option = click.option("-q", "--quiet", count=True, help="Less log output (repeatable).")

model_option = click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Model bundle (RUN/bundle).",
)


def patchset_option(
    holds: str = "Patch set written by `impacts tile`.", *, required: bool = True
) -> Callable[[F], F]:
    """``--data DIR`` (parameter ``data_dir``): a patch set written by ``impacts tile``.

    Args:
        holds: The help text.
        required: False for a command that can run without a patch set (``evaluate --scenes``).

    Returns:
        The click decorator.
    """
    return click.option(
        "--data",
        "data_dir",
        type=click.Path(path_type=Path, file_okay=False),
        required=required,
        help=holds,
    )


data_option = patchset_option()

db_option = click.option(
    "--db",
    "db_url",
    envvar="IMPACTS_REVIEW_DB_URL",
    default=DEFAULT_DB,
    show_default=True,
    help="Review database URL (env IMPACTS_REVIEW_DB_URL): sqlite:///PATH.db or postgresql+psycopg://...",
)


def out_option(holds: str, *, required: bool = True) -> Callable[[F], F]:
    """``--out DIR`` (parameter ``out_dir``): the folder a command writes.

    Args:
        holds: What the folder holds, as the help text, e.g. ``"Run folder."``.
        required: False only for a group whose subcommands take their own ``--out``.

    Returns:
        The click decorator.
    """
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path, file_okay=False),
        required=required,
        help=holds,
    )


def scenes_option(holds: str, *, exists: bool = False, required: bool = True) -> Callable[[F], F]:
    """``--scenes DIR`` (parameter ``scenes_dir``): a folder of ``NAME.tif`` scenes.

    Args:
        holds: What the folder holds, as the help text.
        exists: Refuse a folder that does not exist before the command runs.
        required: False only for a group whose subcommands take their own ``--scenes``.

    Returns:
        The click decorator.
    """
    return click.option(
        "--scenes",
        "scenes_dir",
        type=click.Path(path_type=Path, file_okay=False, exists=exists),
        required=required,
        help=holds,
    )


def config_option(example: str, *, required: bool = False) -> Callable[[F], F]:
    """``--config FILE`` (parameter ``config_path``): the YAML config a command starts from.

    Args:
        example: Where an example config lives, e.g. ``"configs/tile.yaml"``.
        required: Whether the command has no built-in defaults to fall back on.

    Returns:
        The click decorator.
    """
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        required=required,
        default=None,
        help=f"YAML config (see {example}).",
    )


def set_option(example: str, *, of: str = "the config") -> Callable[[F], F]:
    """``--set KEY=VALUE`` (parameter ``sets``, repeatable): overrides applied after the config.

    Args:
        example: One override for the help text, e.g. ``"epochs=3"``.
        of: What the overrides change, e.g. ``"the bundle's evaluation settings"``.

    Returns:
        The click decorator.
    """
    return click.option(
        "--set",
        "sets",
        multiple=True,
        help=f"Override KEY=VALUE of {of} (repeatable), e.g. --set {example}.",
    )


def seed_option(of: str) -> Callable[[F], F]:
    """``--seed N``: the config's ``seed`` from the command line.

    Args:
        of: What the seed draws, e.g. ``"splits, crops and sampling"``.

    Returns:
        The click decorator.
    """
    return click.option("--seed", type=int, default=None, help=f"Seed of {of} [config: 0].")


def workers_option(what: str, *, default: int | None = None) -> Callable[[F], F]:
    """``--workers N``: how many processes a command starts.

    Args:
        what: The help text, e.g. ``"Scene processes [config: one per core]."``.
        default: The default (shown in the help), or None to leave it to the config.

    Returns:
        The click decorator.
    """
    return click.option("--workers", type=int, default=default, show_default=default is not None, help=what)


def array_index_option(verb: str, then: str = "") -> Callable[[F], F]:
    """``--array-index I [--array-size N | --chunk-size K]`` (parameters ``array_index``,
    ``array_size``, ``chunk_size``): one LSF job-array element handles a chunk of the scenes.

    Alone, ``--array-index I`` takes the I-th scene; with ``--array-size N`` the scenes are
    cut into N near-equal contiguous chunks and element I takes the I-th; with
    ``--chunk-size K`` element I takes scenes ``(I-1)*K+1 .. I*K``. The arithmetic is
    :class:`impacts.chunks.Chunking`'s.

    Args:
        verb: What the command does to those scenes, e.g. ``"Tile"``.
        then: What follows, appended to the help text, e.g. ``"; merge with ..."``.

    Returns:
        The click decorator.
    """

    def decorate(f: F) -> F:
        f = click.option(
            "--chunk-size",
            type=click.IntRange(min=1),
            default=None,
            help="With --array-index I: element I takes scenes (I-1)*K+1..I*K (1-based).",
        )(f)
        f = click.option(
            "--array-size",
            type=click.IntRange(min=1),
            default=None,
            help="With --array-index I: cut the scenes into N near-equal contiguous chunks "
            "and take the I-th (the array is [1-N]).",
        )(f)
        return click.option(
            "--array-index",
            type=int,
            default=None,
            help=f"{verb} only the I-th scene (1-based, e.g. $LSB_JOBINDEX) of the folder in name "
            f"order or of --scene-list, or the I-th chunk with --array-size/--chunk-size{then}.",
        )(f)

    return decorate


def array_chunking(array_index: int | None, array_size: int | None, chunk_size: int | None) -> Chunking:
    """The chunking that :func:`array_index_option`'s values ask for, checked together.

    Args:
        array_index: ``--array-index``.
        array_size: ``--array-size``.
        chunk_size: ``--chunk-size``.

    Returns:
        The :class:`impacts.chunks.Chunking` (one scene per element when neither size is given).

    Raises:
        click.UsageError: Both sizes, or a size without ``--array-index``.
    """
    from impacts.chunks import Chunking

    if array_size is not None and chunk_size is not None:
        raise click.UsageError("pass --array-size N or --chunk-size K, not both")
    if array_index is None and (array_size is not None or chunk_size is not None):
        raise click.UsageError("--array-size/--chunk-size need --array-index I (e.g. $LSB_JOBINDEX)")
    return Chunking(array_size=array_size, chunk_size=chunk_size)


def scene_list_option(verb: str, instead: str = " instead of a folder") -> Callable[[F], F]:
    """``--scene-list FILE`` (parameter ``scene_list``): one scene path per line.

    Args:
        verb: What the command does to the listed scenes, e.g. ``"Predict"``.
        instead: What the list replaces, appended to the help text.

    Returns:
        The click decorator.
    """
    return click.option(
        "--scene-list",
        "scene_list",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=f"{verb} the scenes of FILE, one path per line (blank and # lines ignored; "
        f"relative paths from the current directory){instead}.",
    )


def option_overrides(pairs: Mapping[str, object], sets: Iterable[str]) -> list[str]:
    """Turn options that shadow config keys into ``KEY=VALUE`` overrides, after ``--set``.

    Args:
        pairs: Config key to option value; a None value (option not given) is left out.
        sets: The ``--set`` overrides.

    Returns:
        The ``--set`` overrides, then one per given option, so an option wins over ``--set``.
    """
    return [*sets, *(f"{key}={value}" for key, value in pairs.items() if value is not None)]


def given_options(ctx: click.Context) -> list[click.Parameter]:
    """The parameters of ``ctx``'s command that the user set (command line or environment).

    Args:
        ctx: The context of the running command.

    Returns:
        Those parameters, in the order the command declares them.
    """
    unset = (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    return [
        p for p in ctx.command.params if p.name is not None and ctx.get_parameter_source(p.name) not in unset
    ]


def option_name(param: click.Parameter) -> str:
    """How the user spells ``param``: its longest flag (``--scenes``), or its metavar."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name
