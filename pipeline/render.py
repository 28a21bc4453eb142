"""`pipeline render`: a GIF or MP4 of stored episodes, drawn from their re-simulation.

Each episode is played again by `pipeline.replay` (stored seed and actions, the recorder's loop),
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

import ctypes.util
import io
import itertools
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.configs.release import RenderConfig
from pipeline.errors import PipelineError
from pipeline.manifest import Manifest, read_manifest
from pipeline.registry import TaskSpec, get_task
from pipeline.replay import Grab, read_episodes, replay_env, replay_episode, select_episodes
from pipeline.shards import EpisodeRecord, ShardRecord
from pipeline.storage import Location, open_location

log = logging.getLogger(__name__)
DEFAULT_FPS = {"atari": 15.0, "babyai": 4.0, "mujoco": 30.0, "metaworld": 30.0}
ATARI_SCALE = 2
BABYAI_TILE = 16
"""Pixels per grid cell: a 22x22 BabyAI level is 352 px wide (at 8 its objects were specks)."""
MISSION_FONT_PX = 16
"""The BabyAI mission, written above the grid (the agent's instruction: what the episode is about)."""
MISSION_LINES = 2
"""Lines of the mission strip; a longer mission is written smaller (down to 10 px) to fit."""
MUJOCO_SIZE = 256
CAPTION_PX = 12
GL_SUITES = ("mujoco", "metaworld")
CLIP_FRAMES = 200
"""Steps in a published clip at most: 13 s of Atari at 15 fps, 50 s of BabyAI at 4 fps; a few hundred KB."""
CLIP_GL_FRAMES = 100
"""The cap for MuJoCo and Meta-World (3 s at 30 fps, a whole 100-step Meta-World episode): OSMesa
draws about 0.1 s a frame on a CPU, so ~10 s per config."""
CLIP_MUJOCO_SIZE = 128
"""MuJoCo's side in a published clip: a quarter of the pixels to draw and to store."""
GL_FIX = (
    "MuJoCo draws through an offscreen OpenGL: install Debian's libosmesa6 (apt-get install libosmesa6) "
    "and set MUJOCO_GL=osmesa; Atari and BabyAI render without GL"
)


class NoGL(PipelineError):
    """MuJoCo cannot draw here: no usable OpenGL (the message names the fix)."""


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


def _atari_frame(_env: object, observation: object) -> np.ndarray:
    newest = np.asarray(observation)[..., -1]
    big = newest.repeat(ATARI_SCALE, axis=0).repeat(ATARI_SCALE, axis=1)
    return np.stack([big] * 3, axis=-1)


def _babyai_frame(env, _observation: object) -> np.ndarray:
    grid = env.unwrapped.get_frame(highlight=False, tile_size=BABYAI_TILE)
    return with_text_above(grid, str(env.unwrapped.mission))


def with_text_above(frame: np.ndarray, text: str) -> np.ndarray:
    """`frame` under a dark strip holding `text` in `MISSION_LINES` lines, wrapped to the frame's width
    (Pillow's bundled font, smaller for a long text). The strip's height is fixed, so every frame of a
    video has one size whatever the missions of its episodes."""
    width = frame.shape[1]
    for size in range(MISSION_FONT_PX, 9, -1):
        font = ImageFont.load_default(size=size)
        lines = _wrapped(text, font, width - 8)
        if len(lines) <= MISSION_LINES:
            break
    line_px = MISSION_FONT_PX + 4
    strip = Image.new("RGB", (width, 6 + line_px * MISSION_LINES), (32, 32, 48))
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines[:MISSION_LINES]):
        draw.text((4, 3 + i * line_px), line, fill=(255, 255, 255), font=font)
    return np.concatenate([np.asarray(strip), np.ascontiguousarray(frame[..., :3], dtype=np.uint8)], axis=0)


def _wrapped(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def _mujoco_frame(env, _observation: object) -> np.ndarray:
    return env.unwrapped.mujoco_renderer.render("rgb_array")


def _use_offscreen_gl() -> None:
    """Pick OSMesa when nothing is chosen and it is installed; refuse in one line when no GL can work."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen is None and ctypes.util.find_library("OSMesa"):
        os.environ["MUJOCO_GL"] = "osmesa"
    elif chosen is None:
        raise NoGL(f"no OpenGL for MuJoCo here (libOSMesa not found): {GL_FIX}")


def grabber(spec: TaskSpec, env, mujoco_size: int = MUJOCO_SIZE) -> Grab:
    """The frame grabber of the suite, its renderer set up (MuJoCo: size, GL) and tried once."""
    if spec.suite == "atari":
        return _atari_frame
    if spec.suite == "babyai":
        return _babyai_frame
    _use_offscreen_gl()
    renderer = env.unwrapped.mujoco_renderer
    renderer.width = renderer.height = mujoco_size
    try:
        with warnings.catch_warnings():  # GLFW warns before it fails: the one line below says it all
            warnings.simplefilter("ignore")
            _mujoco_frame(env, None)
    except Exception as exc:  # any backend failure (EGL without a GPU, a missing library) reads the same
        cause = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise NoGL(
            f"cannot render {spec.config} (MUJOCO_GL={os.environ.get('MUJOCO_GL')}: {cause}): {GL_FIX}"
        ) from None
    return _mujoco_frame


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


def run_render(config: RenderConfig) -> RenderResult:
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
    fps = config.fps or DEFAULT_FPS[spec.suite]
    drawn = draw_episodes(location, spec, manifest, selection)
    write_video(drawn.images, out, fps)
    width, height = drawn.images[0].size
    return RenderResult(str(out), len(drawn.images), width, height, fps, drawn.episodes, drawn.not_reproduced)


def clip_gif(location: Location, config: str, max_frames: int | None = None) -> bytes | None:
    """The card's clip of a config: a GIF of its first episode by id, at most `max_frames` steps
    (default `CLIP_FRAMES`, `CLIP_GL_FRAMES` for MuJoCo and Meta-World), at the suite's default fps
    (MuJoCo at `CLIP_MUJOCO_SIZE`); None when the config kept no episode.

    The same stored episode gives the same bytes (the re-simulation and Pillow's encoder are
    deterministic), so re-publishing unchanged data uploads nothing."""
    spec = get_task(config)
    manifest = read_manifest(location, config)
    selection = select_episodes(manifest, 1)
    if not selection:
        return None
    cap = max_frames or (CLIP_GL_FRAMES if spec.suite in GL_SUITES else CLIP_FRAMES)
    drawn = draw_episodes(location, spec, manifest, selection, cap, CLIP_MUJOCO_SIZE)
    return gif_bytes(drawn.images, DEFAULT_FPS[spec.suite])


class ClipMaker:
    """Clips for the published cards, where a clip is an extra: one that cannot be drawn is left out
    with a warning and never stops a publish. Missing GL is said once, then MuJoCo and Meta-World
    configs get no clip without trying again."""

    def __init__(self) -> None:
        self.no_gl = False

    def gif(self, location: Location, config: str) -> bytes | None:
        """`clip_gif` of the config, or None (no episode, no GL, or a failure, each logged)."""
        try:
            if get_task(config).suite in GL_SUITES and not self.usable_gl():
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
                _use_offscreen_gl()
            except NoGL as exc:
                self._say_no_gl(exc)
        return not self.no_gl

    def _say_no_gl(self, exc: NoGL) -> None:
        if not self.no_gl:
            log.warning("no clips for MuJoCo and Meta-World configs: %s", exc)
        self.no_gl = True
