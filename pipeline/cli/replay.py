"""CLI subcommands that play stored episodes again: replay (do they reproduce?) and render (a video)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

from pipeline.cli.options import add_config, config_from
from pipeline.configs.replay import RenderConfig, ReplayConfig


# --- replay ------------------------------------------------------------------------------------
def _add_replay(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "replay", ReplayConfig, _cmd_replay)


def _cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.checks.replay import replay

    result = replay(config_from(ReplayConfig, args))
    out = Console(soft_wrap=True)
    replayed, bad = len(result.episodes), len(result.mismatches)
    for mismatch in result.mismatches:
        out.print(f"[red]{escape(mismatch.line(result.config))}[/]", highlight=False)
    exactness = (
        "all bit-exact"
        if result.exact == replayed
        else f"{result.exact} bit-exact, largest difference {result.max_abs_diff:.3g}"
    )
    status = "[green]ok[/]" if result.ok else f"[red]FAILED ({bad})[/]"
    out.print(
        f"{result.config}: {status}  {replayed - bad}/{replayed} episodes reproduce "
        f"({result.steps} steps, {exactness}; {result.seconds:.1f} s)",
        highlight=False,
    )
    return 0 if result.ok else 1


# --- render ------------------------------------------------------------------------------------
def _add_render(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "render", RenderConfig, _cmd_render)


def _cmd_render(args: argparse.Namespace) -> int:
    from pipeline.browse.render import render

    result = render(config_from(RenderConfig, args))
    out = Console(soft_wrap=True)
    episodes = ", ".join(str(e) for e in result.episodes)
    out.print(
        f"wrote {escape(result.out)}: {result.frames} frames of {result.width}x{result.height} at "
        f"{result.fps:g} fps (episodes {episodes})",
        highlight=False,
    )
    if result.not_reproduced:
        out.print(
            f"[yellow]episodes {list(result.not_reproduced)} do not reproduce: the video shows their "
            f"re-simulation (see `pipeline replay`)[/]",
            highlight=False,
        )
    return 0
