"""`pipeline render`: a GIF or MP4 of stored episodes, drawn from their re-simulation.

Each episode is played again by `pipeline.checks.replay` (stored seed and actions, the recorder's loop),
and one frame is taken per stored step, of the state the stored action was taken in:

- Atari: the newest frame of the stack the agent saw (84x84 grey, shown at 2x), as played;
- BabyAI: minigrid's own drawing of the grid (`get_frame`, plain numpy, no GL) at 16 px a cell,
  under the mission it is given;
- MuJoCo / Meta-World: MuJoCo's offscreen renderer through gymnasium's, which needs an OpenGL
  context: on a machine without a GPU, OSMesa (`MUJOCO_GL=osmesa`, Debian's libosmesa6), picked
  when MUJOCO_GL is unset and the library is installed. Without a usable GL, render stops with
  one line naming both.

A caption strip under each frame gives the episode id and step, so no two frames are alike
(a GIF encoder would otherwise merge repeated frames) and a viewer knows what is shown. An
episode that does not reproduce is still drawn, with a warning: the frames show the re-simulation.

`clip_gif` draws the short clip the published cards show (the first episode, at most `CLIP_FRAMES`
steps, MuJoCo at `CLIP_MUJOCO_SIZE`), and `ClipMaker` wraps it for publishing: a clip that cannot be
drawn is left out with a warning, never an error.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.checks.replay import Grab, read_episodes, replay_env, replay_episode, select_episodes
from pipeline.configs.replay import RenderConfig
from pipeline.errors import PipelineError
from pipeline.format.manifest import Manifest, read_manifest
from pipeline.format.shards import EpisodeRecord, ShardRecord
from pipeline.runtime.storage import Location, open_location
from pipeline.suites import get_suite
from pipeline.suites.drawing import NoGL, use_offscreen_gl
from pipeline.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)
MUJOCO_SIZE = 256
CAPTION_PX = 12
CLIP_FRAMES = 200
"""Steps in a published clip at most: 13 s of Atari at 15 fps, 50 s of BabyAI at 4 fps; a few hundred KB."""
CLIP_GL_FRAMES = 100
"""The cap for MuJoCo and Meta-World (3 s at 30 fps, a whole 100-step Meta-World episode): OSMesa
draws about 0.1 s a frame on a CPU, so ~10 s per config."""
CLIP_MUJOCO_SIZE = 128
"""MuJoCo's side in a published clip: a quarter of the pixels to draw and to store."""


@dataclass(frozen=True)
class RenderResult:
    """What `pipeline render` wrote."""

    out: str
    frames: int
    width: int
    height: int
    fps: float
    episodes: tuple[int, ...]
    not_reproduced: tuple[int, ...]
    """Episodes whose re-simulation left the stored one (drawn anyway)."""


def grabber(spec: TaskSpec, env, mujoco_size: int = MUJOCO_SIZE) -> Grab:
    """The suite's frame grabber (`Suite.frame_grabber`), its renderer set up (MuJoCo: size, GL)
    and tried once."""
    return get_suite(spec.suite).frame_grabber(spec, env, mujoco_size)


def captioned(frame: np.ndarray, text: str) -> Image.Image:
    """The frame with a black strip below it holding `text`."""
    height, width = frame.shape[:2]
    image = Image.new("RGB", (width, height + CAPTION_PX))
    image.paste(Image.fromarray(np.ascontiguousarray(frame[..., :3], dtype=np.uint8)), (0, 0))
    ImageDraw.Draw(image).text((2, height), text, fill=(255, 255, 255))
    return image


def _save_gif(images: list[Image.Image], out: Path | io.BytesIO, fps: float) -> None:
    """Pillow's GIF: no timestamp or version in the file, so the same frames give the same bytes."""
    images[0].save(
        out, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )


def gif_bytes(images: list[Image.Image], fps: float) -> bytes:
    """The frames as an animated GIF, in memory (a file to publish)."""
    buffer = io.BytesIO()
    _save_gif(images, buffer, fps)
    return buffer.getvalue()


def write_video(images: list[Image.Image], out: Path, fps: float) -> None:
    """A GIF through Pillow or an MP4 through OpenCV (already a dependency, with its own encoder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial{out.suffix}")
    if out.suffix.lower() == ".gif":
        _save_gif(images, partial, fps)
    else:
        import cv2

        width, height = images[0].size
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise PipelineError(f"OpenCV has no MP4 encoder here: write a .gif instead of {out}")
        try:
            for image in images:
                writer.write(np.asarray(image)[..., ::-1])  # OpenCV takes BGR
        finally:
            writer.release()
    os.replace(partial, out)


_NOT_DRAWN = np.zeros((0, 0, 3), dtype=np.uint8)


def _first_frames(grab: Grab, count: int | None) -> Grab:
    """`grab` for the first `count` states only: the replay goes on to the end (and compares), undrawn."""
    if count is None:
        return grab
    calls = itertools.count()
    return lambda env, observation: grab(env, observation) if next(calls) < count else _NOT_DRAWN


@dataclass(frozen=True)
class Drawn:
    """Captioned frames of re-simulated episodes."""

    images: list[Image.Image]
    episodes: tuple[int, ...]
    not_reproduced: tuple[int, ...]


def draw_episodes(
    location: Location,
    spec: TaskSpec,
    manifest: Manifest,
    selection: list[tuple[ShardRecord, int, EpisodeRecord]],
    max_frames: int | None = None,
    mujoco_size: int = MUJOCO_SIZE,
) -> Drawn:
    """One captioned frame per stored step of the selected episodes, at most `max_frames` in all."""
    env = replay_env(spec, manifest)
    images: list[Image.Image] = []
    episodes, not_reproduced = [], []
    try:
        grab = grabber(spec, env, mujoco_size)
        for stored in read_episodes(location, spec, selection):
            room = None if max_frames is None else max_frames - len(images)
            result, frames = replay_episode(env, spec, stored, _first_frames(grab, room))
            episodes.append(result.episode_id)
            if result.mismatch is not None:
                not_reproduced.append(result.episode_id)
                log.warning("%s (the video shows the re-simulation)", result.mismatch.line(spec.config))
            images += [captioned(f, f"ep {result.episode_id} t {t}") for t, f in enumerate(frames[:room])]
            if max_frames is not None and len(images) >= max_frames:
                break
    finally:
        env.close()
    return Drawn(images, tuple(episodes), tuple(not_reproduced))


def render(config: RenderConfig) -> RenderResult:
    """`pipeline render`: draw the first `config.episodes` episodes of a config into one video."""
    location = open_location(config.data_dir)
    if not location.exists(""):
        raise PipelineError(f"{config.data_dir} does not exist: give the folder or URI a rollout wrote")
    spec = get_task(config.config)
    manifest = read_manifest(location, config.config)
    selection = select_episodes(manifest, config.episodes, config.split)
    if not selection:
        raise PipelineError(f"{config.config} has no {config.split} episodes to render: pick another --split")
    out = Path(config.out or f"{config.config}.gif")
    fps = config.fps or get_suite(spec.suite).fps_for(spec)
    drawn = draw_episodes(location, spec, manifest, selection)
    write_video(drawn.images, out, fps)
    width, height = drawn.images[0].size
    return RenderResult(str(out), len(drawn.images), width, height, fps, drawn.episodes, drawn.not_reproduced)


def clip_gif(location: Location, config: str, max_frames: int | None = None) -> bytes | None:
    """The card's clip of a config: a GIF of its first episode by id, at most `max_frames` steps
    (default `CLIP_FRAMES`, `CLIP_GL_FRAMES` for MuJoCo and Meta-World), at the task's fps (`Suite.fps_for`)
    (MuJoCo at `CLIP_MUJOCO_SIZE`); None when the config kept no episode.

    The same stored episode gives the same bytes (the re-simulation and Pillow's encoder are
    deterministic), so re-publishing unchanged data uploads nothing."""
    spec = get_task(config)
    manifest = read_manifest(location, config)
    selection = select_episodes(manifest, 1)
    if not selection:
        return None
    cap = max_frames or (CLIP_GL_FRAMES if get_suite(spec.suite).needs_gl else CLIP_FRAMES)
    drawn = draw_episodes(location, spec, manifest, selection, cap, CLIP_MUJOCO_SIZE)
    return gif_bytes(drawn.images, get_suite(spec.suite).fps_for(spec))


class ClipMaker:
    """Clips for the published cards, where a clip is an extra: one that cannot be drawn is left out
    with a warning and never stops a publish. Missing GL is said once, then MuJoCo and Meta-World
    configs get no clip without trying again."""

    def __init__(self) -> None:
        self.no_gl = False

    def gif(self, location: Location, config: str) -> bytes | None:
        """`clip_gif` of the config, or None (no episode, no GL, or a failure, each logged)."""
        try:
            if get_suite(get_task(config).suite).needs_gl and not self.usable_gl():
                return None
            return clip_gif(location, config)
        except NoGL as exc:
            self._say_no_gl(exc)
        except Exception as exc:  # any failure to draw (a broken env, a bad shard) costs the clip only
            log.warning("no clip for %s: %s", config, " ".join(str(exc).split())[:300] or type(exc).__name__)
        return None

    def usable_gl(self) -> bool:
        """Whether MuJoCo may draw here (picks OSMesa when installed); False, said once, when not."""
        if not self.no_gl:
            try:
                use_offscreen_gl()
            except NoGL as exc:
                self._say_no_gl(exc)
        return not self.no_gl

    def _say_no_gl(self, exc: NoGL) -> None:
        if not self.no_gl:
            log.warning("no clips for MuJoCo and Meta-World configs: %s", exc)
        self.no_gl = True
