"""Configs of the subcommands that look into a dataset without changing it: info, view."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.configs import option, positive
from pipeline.errors import PipelineError

DEFAULT_VIEW_PORT = 8765


@dataclass(frozen=True)
class InfoConfig:
    """What a dataset holds: configs, episodes, steps, sizes, policies, scores.

    Read from the manifests alone (no shard is read; a Hub repo's card and manifests are fetched).
    With --config, that config's plan, provenance and its first episodes (id, split, seed, length,
    return, success).
    """

    data_dir: str = option(positional=True, metavar="DIR|REPO")
    """Dataset folder, s3://bucket/prefix, or a Hub dataset repo ORG/NAME."""
    config: str | None = option(None, metavar="C")
    """Show this config in detail, with its episodes."""
    episodes: int = 20
    """With --config: list the first N episodes by id (--json lists all)."""
    json: bool = False
    """Print JSON instead of tables (every episode with --config)."""

    def __post_init__(self) -> None:
        positive("episodes", self.episodes)


@dataclass(frozen=True)
class ViewConfig:
    """Serve a local page showing a config's episodes: frames beside actions and rewards.

    Frames are drawn by re-simulating the episode (`pipeline render`'s drawing): Atari as played,
    BabyAI minigrid's drawing, MuJoCo and Meta-World through OSMesa when available (without GL the
    page shows actions and rewards alone). Listens on 127.0.0.1 only; Ctrl-C stops it.
    """

    data_dir: str = option(positional=True, metavar="DIR|REPO")
    """Dataset folder, s3://bucket/prefix, or a Hub dataset repo ORG/NAME."""
    config: str = option(metavar="C")
    """The config to show, e.g. babyai-go-to."""
    episode: int | None = option(None, metavar="ID", default_text="the first by id")
    """The episode shown first."""
    port: int = DEFAULT_VIEW_PORT
    """Port on 127.0.0.1 (0: any free port)."""
    max_frames: int = 1000
    """Frames drawn per episode at most (MuJoCo and Meta-World draw 0.1-0.2 s a frame in software)."""

    def __post_init__(self) -> None:
        positive("max_frames", self.max_frames)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise PipelineError(f"--port must be in 0..65535, got {self.port!r}")
        if self.episode is not None and (isinstance(self.episode, bool) or self.episode < 0):
            raise PipelineError(f"--episode must be an episode id (0 or more), got {self.episode!r}")
