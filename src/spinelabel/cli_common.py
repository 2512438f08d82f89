"""What every command module shares: its output lines and the --region check.

The command modules (``cli``, ``cli_train``, ``cli_pacs``, ``cli_review``)
import these; the library below them never prints.
"""

from __future__ import annotations

import click
import typer

__all__ = ["OPT_TRUST_ORIENTATION", "check_region", "echo", "warn"]

#: ``--trust-orientation`` of every command that labels: skips the upside-down check (``pipeline.Labeler``).
OPT_TRUST_ORIENTATION = typer.Option(
    False, "--trust-orientation",
    help="Skip the upside-down check (a second pass of the network on each surely named scan): for images known to be "
         "stored as their headers say. Each result records that the check was skipped.",
)


def echo(msg: str, quiet: bool = False, err: bool = False) -> None:
    """``msg`` on stdout (stderr with ``err``) unless ``quiet``."""
    if not quiet:
        typer.echo(msg, err=err)


def warn(message: str) -> None:
    """Show a skipped item of a library call (``on_problem`` callbacks) as a warning on stderr."""
    typer.echo(f"warning: {message}", err=True)


def check_region(region: str, auto: bool = True) -> str:
    """The region ``region`` names, in any case ("Lumbar"), or "auto" when ``auto``; a usage error otherwise."""
    from .anatomy import REGIONS

    name = region.strip().lower()
    if name in REGIONS or (auto and name == "auto"):
        return name
    choices = ", ".join(("auto", *REGIONS) if auto else REGIONS)
    if name == "auto":  # auto picks a model for each image when labeling; here the command needs one region
        raise click.BadParameter(f"auto is for labeling; choose one region: {choices}", param_hint="--region")
    raise click.BadParameter(f"unknown region {region!r}; choose from {choices}", param_hint="--region")
