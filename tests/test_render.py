"""`pipeline render`: videos of stored episodes drawn from their re-simulation (real envs, real files)."""

from __future__ import annotations

import ctypes.util
import io
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.browse.render import CAPTION_PX, MUJOCO_SIZE, render
from pipeline.cli import main
from pipeline.configs.replay import RenderConfig
from pipeline.suites.atari import SCALE as ATARI_SCALE
from pipeline.suites.babyai import TILE as BABYAI_TILE
from pipeline.suites.drawing import MISSION_FONT_PX, MISSION_LINES, with_text_above

OSMESA = ctypes.util.find_library("OSMesa")


def _first_episodes(root, config: str, count: int) -> list[dict]:
    data = json.loads((root / "meta" / config / "manifest.json").read_text())
    records = [(e, s["path"], row) for s in data["shards"] for row, e in enumerate(s["episodes"])]
    return sorted(records, key=lambda r: r[0]["episode_id"])[:count]


def test_babyai_gif_has_one_frame_per_step_from_minigrids_renderer(sample_dataset, tmp_path, capsys):
    out = tmp_path / "babyai.gif"
    assert (
        main(
            ["render", str(sample_dataset), "--config", "babyai-go-to", "--episodes", "2", "--out", str(out)]
        )
        == 0
    )
    episodes = _first_episodes(sample_dataset, "babyai-go-to", 2)
    steps = sum(e["length"] for e, _, _ in episodes)
    strip = 6 + (MISSION_FONT_PX + 4) * MISSION_LINES
    with Image.open(out) as gif:
        assert gif.n_frames == steps
        assert BABYAI_TILE >= 16  # at 8 px a cell (176x188) the objects were specks
        assert gif.size == (22 * BABYAI_TILE, strip + 22 * BABYAI_TILE + CAPTION_PX)  # GoTo: a 22x22 grid
        assert gif.info["duration"] == 250  # BabyAI's default 4 fps
        first = np.asarray(gif.convert("RGB"), dtype=float)[:strip]
    # the mission it was given is written above the grid: the strip is that text's, not another's
    _, path, row = episodes[0]
    mission = pq.read_table(sample_dataset / path).column("text_observations")[row][0].as_py()
    grid = np.zeros((22 * BABYAI_TILE, 22 * BABYAI_TILE, 3), dtype=np.uint8)
    expected = with_text_above(grid, mission)[:strip].astype(float)
    other = with_text_above(grid, "pick up the purple ball")[:strip].astype(float)
    assert np.abs(first - expected).mean() < 0.25 * np.abs(first - other).mean(), mission
    assert f"wrote {out}: {steps} frames" in capsys.readouterr().out


def test_atari_gif_shows_the_frames_as_played(sample_dataset, tmp_path):
    result = render(RenderConfig(str(sample_dataset), "atari-breakout", out=str(tmp_path / "breakout.gif")))
    (record, path, row) = _first_episodes(sample_dataset, "atari-breakout", 1)[0]
    assert result.episodes == (record["episode_id"],) and not result.not_reproduced
    assert (result.frames, result.width, result.height) == (
        record["length"],
        84 * ATARI_SCALE,
        84 * ATARI_SCALE + CAPTION_PX,
    )
    frames = pc.list_flatten(pq.read_table(sample_dataset / path).slice(row, 1).column("image_observations"))
    stored = [pc.struct_field(frames, "bytes")[t].as_py() for t in (0, record["length"] - 1)]
    with Image.open(result.out) as gif:
        assert gif.n_frames == record["length"]
        for frame, png in zip((0, gif.n_frames - 1), stored, strict=True):
            gif.seek(frame)
            shown = np.asarray(gif.convert("RGB"))[: 84 * ATARI_SCALE : ATARI_SCALE, ::ATARI_SCALE, 0]
            newest = np.asarray(Image.open(io.BytesIO(png)))[..., 3]  # the stack's newest frame
            assert np.array_equal(shown, newest)


@pytest.mark.skipif(OSMESA is None, reason="libOSMesa not installed (apt-get install libosmesa6)")
def test_mujoco_mp4_through_osmesa(sample_dataset, tmp_path, monkeypatch):
    import cv2

    monkeypatch.setenv("MUJOCO_GL", "osmesa")  # so that teardown restores the variable render sets
    monkeypatch.delenv("MUJOCO_GL")  # render picks osmesa by itself
    out = tmp_path / "hopper.mp4"
    result = render(RenderConfig(str(sample_dataset), "mujoco-hopper", out=str(out), fps=20))
    (record, _, _) = _first_episodes(sample_dataset, "mujoco-hopper", 1)[0]
    video = cv2.VideoCapture(str(out))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == record["length"] == result.frames
    assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        MUJOCO_SIZE,
        MUJOCO_SIZE + CAPTION_PX,
    )
    ok, frame = video.read()
    assert ok and frame[:MUJOCO_SIZE].std() > 10  # a drawn scene, not a blank buffer


def test_no_usable_gl_is_one_line_naming_the_fix(sample_dataset, tmp_path):
    """GLFW without a display is what a headless machine without OSMesa meets: one line, exit 2."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"} | {"MUJOCO_GL": "glfw"}
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "render",
        str(sample_dataset),
        "--config",
        "mujoco-hopper",
    ]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "x.gif")], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "MUJOCO_GL=osmesa" in errors[0] and "libosmesa6" in errors[0], done.stderr
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--out", "x.png"], "--out must end in .gif or .mp4, got 'x.png'"),
        (["--fps", "0"], "--fps must be in (0, 100], got 0.0"),
        (["--episodes", "0"], "--episodes must be a positive integer, got 0"),
    ],
)
def test_bad_render_input_is_one_line(sample_dataset, capsys, argv, expected):
    assert main(["render", str(sample_dataset), "--config", "babyai-go-to", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"error: {expected}"
