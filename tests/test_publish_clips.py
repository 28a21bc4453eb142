"""The dataset card's clips: `pipeline publish` draws a GIF of each config's first episode, really.

Real publishes of conftest's `sample_dataset` (copied) to a folder: the GIFs are re-simulations of
the stored episodes, the card links them, a second publish draws the same bytes and uploads nothing,
and without OpenGL MuJoCo's configs are published without a clip after one warning line.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from pipeline.browse.render import CLIP_FRAMES, CLIP_GL_FRAMES, CLIP_MUJOCO_SIZE
from pipeline.configs.release_hub import PublishExpertsConfig
from pipeline.format.schema import EPISODE_CLIP
from pipeline.release.publish import PublishConfig, publish
from pipeline.suites import get_suite

OSMESA = ctypes.util.find_library("OSMesa")
NO_GL_CONFIGS = ("babyai-go-to", "mujoco-hopper", "metaworld-reach")


def _first_length(dataset: Path, config: str) -> int:
    manifest = json.loads((dataset / "meta" / config / "manifest.json").read_text())
    return min((e["episode_id"], e["length"]) for s in manifest["shards"] for e in s["episodes"])[1]


def _section(card: str, config: str) -> str:
    start = card.index(f"### {config}\n")
    end = card.find("\n### ", start + 1)
    return card[start : end if end > 0 else None]


def test_each_config_gets_a_clip_on_the_card_and_a_republish_uploads_nothing(dataset_copy, tmp_path):
    configs = ("atari-breakout", "babyai-go-to") + (("mujoco-hopper",) if OSMESA else ())
    folder = tmp_path / "published"
    common = {"to_folder": str(folder), "configs": configs, "progress": False}
    first = publish(PublishConfig(str(dataset_copy), **common))
    card = (folder / "README.md").read_text()
    clips = {}
    for config in configs:
        path = EPISODE_CLIP.format(config=config)
        clips[config] = (folder / path).read_bytes()
        cap = CLIP_GL_FRAMES if get_suite(config.split("-")[0]).needs_gl else CLIP_FRAMES
        with Image.open(folder / path) as gif:
            assert gif.n_frames == min(_first_length(dataset_copy, config), cap) > 1
            if config == "mujoco-hopper":
                assert gif.width == CLIP_MUJOCO_SIZE
        assert len(clips[config]) < 1_000_000
        assert f"![{config}: its first episode, replayed]({path})" in _section(card, config)
    assert first.uploaded_files > 0

    again = publish(PublishConfig(str(dataset_copy), **common))  # the clips drawn again, byte for byte
    assert again.uploaded_files == 0 and again.commits == 0 and again.unchanged_files == first.uploaded_files
    assert {c: (folder / EPISODE_CLIP.format(config=c)).read_bytes() for c in configs} == clips

    without = publish(PublishConfig(str(dataset_copy), **common, clips=False))
    assert without.deleted_files == len(configs) and without.uploaded_files == 1  # the card only
    assert (
        not list(folder.glob("meta/*/episode.gif"))
        and "episode.gif" not in (folder / "README.md").read_text()
    )


def test_without_gl_mujoco_configs_have_no_clip_and_one_warning(dataset_copy, tmp_path):
    """GLFW without a display, as on a headless machine without OSMesa: published all the same."""
    folder = tmp_path / "published"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"} | {"MUJOCO_GL": "glfw", "COLUMNS": "1000"}
    command = [sys.executable, "-m", "pipeline.cli", "publish", str(dataset_copy), "--to-folder", str(folder)]
    done = subprocess.run(
        [*command, "--configs", ",".join(NO_GL_CONFIGS), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]  # rich's log lines
    assert len(warnings) == 1, done.stderr  # one line for both MuJoCo configs
    assert "MUJOCO_GL=osmesa" in warnings[0] and "libosmesa6" in warnings[0]
    card = (folder / "README.md").read_text()
    assert (folder / EPISODE_CLIP.format(config="babyai-go-to")).is_file()
    assert EPISODE_CLIP.format(config="babyai-go-to") in _section(card, "babyai-go-to")
    for config in NO_GL_CONFIGS[1:]:
        assert not (folder / EPISODE_CLIP.format(config=config)).exists()
        assert (
            "episode.gif" not in _section(card, config)
            and (folder / "meta" / config / "stats.json").is_file()
        )


def test_no_clips_is_a_flag_of_both_publish_commands():
    from pipeline.cli import build_parser
    from pipeline.cli.options import config_from

    def parse(*argv: str) -> object:
        args = build_parser().parse_args(list(argv))
        return config_from(args.config_class, args)

    experts = ("publish-experts", "e", "--repo-prefix", "o/p")
    assert parse("publish", "d").clips and parse(*experts).clips
    assert parse("publish", "d", "--no-clips") == PublishConfig("d", clips=False)
    assert parse(*experts, "--no-clips") == PublishExpertsConfig("e", repo_prefix="o/p", clips=False)
