"""`pipeline render`: a GIF or MP4 of stored episodes, drawn from their re-simulation.

Each episode is played again by `pipeline.replay` (stored seed and actions, the recorder's loop),
and one frame is taken per stored step, of the state the stored action was taken in:

- Atari: the newest frame of the stack the agent saw (84x84 grey, shown at 2x), as played;
- BabyAI: minigrid's own drawing of the grid (`get_frame`, plain numpy, no GL);
- MuJoCo / Meta-World: MuJoCo's offscreen renderer through gymnasium's, which needs an OpenGL
  context: on a machine without a GPU, OSMesa (`MUJOCO_GL=osmesa`, Debian's libosmesa6), picked
  when MUJOCO_GL is unset and the library is installed. Without a usable GL, render stops with
  one line naming both.

A caption strip under each frame gives the episode id and step, so no two frames are alike
(a GIF encoder would otherwise merge repeated frames) and a viewer knows what is shown. An
episode that does not reproduce is still drawn, with a warning: the frames show the re-simulation.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.configs.release import RenderConfig
from pipeline.errors import PipelineError
from pipeline.manifest import read_manifest
from pipeline.registry import TaskSpec, get_task
from pipeline.replay import Grab, read_episodes, replay_env, replay_episode, select_episodes
from pipeline.storage import open_location

log = logging.getLogger(__name__)
DEFAULT_FPS = {"atari": 15.0, "babyai": 4.0, "mujoco": 30.0, "metaworld": 30.0}
ATARI_SCALE = 2
BABYAI_TILE = 8
"""Pixels per grid cell: a 22x22 BabyAI room is 176 px wide."""
MUJOCO_SIZE = 256
CAPTION_PX = 12
GL_FIX = (
    "MuJoCo draws through an offscreen OpenGL: install Debian's libosmesa6 (apt-get install libosmesa6) "
    "and set MUJOCO_GL=osmesa; Atari and BabyAI render without GL"
)


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
    return env.unwrapped.get_frame(highlight=False, tile_size=BABYAI_TILE)


def _mujoco_frame(env, _observation: object) -> np.ndarray:
    return env.unwrapped.mujoco_renderer.render("rgb_array")


def _use_offscreen_gl() -> None:
    """Pick OSMesa when nothing is chosen and it is installed; refuse in one line when no GL can work."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen is None and ctypes.util.find_library("OSMesa"):
        os.environ["MUJOCO_GL"] = "osmesa"
    elif chosen is None:
        raise PipelineError(f"no OpenGL for MuJoCo here (libOSMesa not found): {GL_FIX}")


def grabber(spec: TaskSpec, env) -> Grab:
    """The frame grabber of the suite, its renderer set up (MuJoCo: size, GL) and tried once."""
    if spec.suite == "atari":
        return _atari_frame
    if spec.suite == "babyai":
        return _babyai_frame
    _use_offscreen_gl()
    renderer = env.unwrapped.mujoco_renderer
    renderer.width = renderer.height = MUJOCO_SIZE
    try:
        with warnings.catch_warnings():  # GLFW warns before it fails: the one line below says it all
            warnings.simplefilter("ignore")
            _mujoco_frame(env, None)
    except Exception as exc:  # any backend failure (EGL without a GPU, a missing library) reads the same
        cause = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise PipelineError(
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


def write_video(images: list[Image.Image], out: Path, fps: float) -> None:
    """A GIF through Pillow or an MP4 through OpenCV (already a dependency, with its own encoder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial{out.suffix}")
    if out.suffix.lower() == ".gif":
        images[0].save(partial, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
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
    env = replay_env(spec, manifest)
    images: list[Image.Image] = []
    episodes, not_reproduced = [], []
    try:
        grab = grabber(spec, env)
        for stored in read_episodes(location, spec, selection):
            result, frames = replay_episode(env, spec, stored, grab)
            episodes.append(result.episode_id)
            if result.mismatch is not None:
                not_reproduced.append(result.episode_id)
                log.warning("%s (the video shows the re-simulation)", result.mismatch.line(config.config))
            images += [captioned(f, f"ep {result.episode_id} t {t}") for t, f in enumerate(frames)]
    finally:
        env.close()
    write_video(images, out, fps)
    width, height = images[0].size
    return RenderResult(str(out), len(images), width, height, fps, tuple(episodes), tuple(not_reproduced))
