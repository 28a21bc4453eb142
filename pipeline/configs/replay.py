"""Configs of the subcommands that check and show stored episodes by playing them again: replay, render."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from pipeline.configs import option, positive
from pipeline.errors import PipelineError

Split = Literal["train", "test", "both"]
VIDEO_SUFFIXES = (".gif", ".mp4")


def count_or_all(text: str) -> int | None:
    """`--episodes 3` → 3, `--episodes all` → None (every episode)."""
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or `all`, got {text!r}") from None


@dataclass(frozen=True)
class ReplayConfig:
    """Re-simulate stored episodes and check they reproduce.

    Reset each episode's env with its stored seed, apply its stored actions one by one and compare
    every step's observation and reward with the stored ones: exactly for discrete data (BabyAI,
    Atari frames), within float32 rounding for continuous data (MuJoCo, Meta-World). Exit 1 naming
    each episode that does not reproduce, its first differing step and feature.
    """

    data_dir: str = option(positional=True, metavar="DIR")
    """Dataset folder or URI (s3://bucket/prefix)."""
    config: str = option(metavar="C")
    """The config to replay, e.g. babyai-go-to."""
    episodes: int | None = option(None, parse=count_or_all, metavar="N|all", default_text="all")
    """Replay the first N episodes by episode id (of the chosen splits), or all of them."""
    split: Split = "both"
    """Which split's episodes to replay."""

    def __post_init__(self) -> None:
        positive("episodes", self.episodes)


@dataclass(frozen=True)
class RenderConfig:
    """Write a GIF or MP4 of stored episodes, re-simulated.

    Atari shows the frames as played (the newest of each stored stack), BabyAI minigrid's own
    drawing, MuJoCo and Meta-World MuJoCo's offscreen renderer (needs MUJOCO_GL=osmesa and Debian's
    libosmesa6 without a GPU). Each frame is one stored step, captioned with episode id and step.
    """

    data_dir: str = option(positional=True, metavar="DIR")
    """Dataset folder or URI (s3://bucket/prefix)."""
    config: str = option(metavar="C")
    """The config to render, e.g. atari-breakout."""
    episodes: int = 1
    """Render the first N episodes by episode id (of the chosen splits), one after the other."""
    split: Split = "both"
    """Which split's episodes to render."""
    out: str | None = option(None, metavar="FILE", default_text="<config>.gif")
    """Output file: .gif (Pillow) or .mp4 (OpenCV's encoder)."""
    fps: float | None = None
    """Frames per second; default per suite: Atari 15 (its real time with frame skip 4), BabyAI 4,
    MuJoCo and Meta-World 30."""

    def __post_init__(self) -> None:
        positive("episodes", self.episodes)
        if self.out is not None and not self.out.lower().endswith(VIDEO_SUFFIXES):
            raise PipelineError(f"--out must end in .gif or .mp4, got {self.out!r}")
        if self.fps is not None and not 0 < self.fps <= 100:
            raise PipelineError(f"--fps must be in (0, 100], got {self.fps}")
