"""Shared core of mars-impacts: errors, configs, provenance and the `impacts` CLI root.

The packages build on each other as ``service -> training -> tiling -> impacts``; this
package imports none of them at import time (the CLI root loads subcommands lazily).
"""

__version__ = "0.1.0"
