"""Drawing a suite's state as an RGB frame: what the suite modules share, and the one home of GL.

MuJoCo's renderer (MuJoCo, Meta-World, DeepMind Control) needs an OpenGL context: on a machine
without a GPU, OSMesa (`MUJOCO_GL=osmesa`, Debian's libosmesa6), picked when MUJOCO_GL is unset
and the library is installed. Without a usable GL, drawing stops with one line naming both.
Atari and BabyAI draw without GL.
"""

from __future__ import annotations

import ctypes.util
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.tasks.registry import TaskSpec

MISSION_FONT_PX = 16
"""A text written above a frame (BabyAI's mission: what the episode is about)."""
MISSION_LINES = 2
"""Lines of the text strip; a longer text is written smaller (down to 10 px) to fit."""
GL_FIX = (
    "MuJoCo draws through an offscreen OpenGL: install Debian's libosmesa6 (apt-get install libosmesa6) "
    "and set MUJOCO_GL=osmesa; Atari and BabyAI render without GL"
)


class NoGL(PipelineError):
    """MuJoCo cannot draw here: no usable OpenGL (the message names the fix)."""


def use_offscreen_gl() -> None:
    """Pick OSMesa when nothing is chosen and it is installed; refuse in one line when no GL can work."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen is None and ctypes.util.find_library("OSMesa"):
        os.environ["MUJOCO_GL"] = "osmesa"
    elif chosen is None:
        raise NoGL(f"no OpenGL for MuJoCo here (libOSMesa not found): {GL_FIX}")


def tried(spec: TaskSpec, grab: Any, env: Any) -> Any:
    """`grab`, after drawing one frame with it: a GL failure is one line naming the fix."""
    try:
        with warnings.catch_warnings():  # GLFW warns before it fails: the one line below says it all
            warnings.simplefilter("ignore")
            grab(env, None)
    except Exception as exc:  # any backend failure (EGL without a GPU, a missing library) reads the same
        cause = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise NoGL(
            f"cannot render {spec.config} (MUJOCO_GL={os.environ.get('MUJOCO_GL')}: {cause}): {GL_FIX}"
        ) from None
    return grab


def _mujoco_frame(env: Any, _observation: object) -> np.ndarray:
    return env.unwrapped.mujoco_renderer.render("rgb_array")


def mujoco_grabber(spec: TaskSpec, env: Any, size: int) -> Any:
    """Frames from gymnasium's MuJoCo renderer, `size` pixels a side."""
    use_offscreen_gl()
    renderer = env.unwrapped.mujoco_renderer
    renderer.width = renderer.height = size
    return tried(spec, _mujoco_frame, env)


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
