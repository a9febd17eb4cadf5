"""The ``impacts`` console script: a thin click root that loads subcommands lazily.

Subcommands live in each package's ``cli.py`` and are named here as ``module:attribute``
strings, so ``impacts --help`` and the tiling commands never import TensorFlow. Options
that several commands take are declared once, in :mod:`impacts.options`.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from impacts import __version__
from impacts.errors import ImpactsError
from impacts.options import quiet_option, verbose_option

SUBCOMMANDS: dict[str, str] = {
    "synth": "tiling.cli:synth",
    "tile": "tiling.cli:tile",
    "train": "training.cli:train",
    "evaluate": "training.cli:evaluate",
    "predict": "training.cli:predict",
    "jobs": "training.cli:jobs",
    "catalog": "training.catalog_cli:catalog",
    "serve": "service.cli:serve",
    "review": "service.review.cli:review",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used or listed."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImpactsError as exc:
            # A user error is one clear line and a non-zero exit, never a traceback.
            raise click.ClickException(" ".join(str(exc).split())) from exc


def configure_logging(verbosity: int) -> None:
    """Set the root log level from ``-v``/``-q`` counts (0 = INFO)."""
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        max(-2, min(verbosity, 1)), logging.DEBUG
    )
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger().setLevel(level)


@click.group(cls=LazyGroup, lazy=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="impacts")
@verbose_option
@quiet_option
def main(verbose: int, quiet: int) -> None:
    """Find fresh impact sites on Mars orbital images: synth -> tile -> train -> predict -> review."""
    configure_logging(verbose - quiet)


if __name__ == "__main__":
    main()
