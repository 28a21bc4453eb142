"""The dataset card (README.md): YAML header with `configs:` for `datasets`, and a body for people.

The card is rendered from Jinja2 templates in the `dataset_card` package (found with
`importlib.resources`, so an installed wheel works like a checkout) and from per-config statistics
(`pipeline.report.stats`), never from the shards directly, so a card can cover configs published earlier
whose data is not on this machine: their `stats.json` is enough. Configs known only from an
existing card's YAML (no stats file) keep their `configs:` entry and are listed as such.

`render_card(location, configs)` renders the card of a local (or S3) dataset folder from its
manifests alone — cheap enough for the rollout to call when it rewrites the folder's README.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
import yaml

from pipeline.errors import PipelineError
from pipeline.format.columns import (
    CONTINUOUS_ACTIONS,
    CONTINUOUS_OBSERVATIONS,
    DISCRETE_ACTIONS,
    DISCRETE_OBSERVATIONS,
    IMAGE_OBSERVATIONS,
    REWARDS,
    TEXT_OBSERVATIONS,
)
from pipeline.format.manifest import dataset_configs, read_manifest
from pipeline.format.schema import EPISODE_CLIP, RETURNS_PLOT, STATS_PATH, SUITE_PLOT
from pipeline.report.quality import DEFAULT_BOOTSTRAP_REPS, JAT_BAR, QualityRow, quality_row
from pipeline.report.stats import episode_stats
from pipeline.report.stats_types import ConfigStats
from pipeline.runtime.storage import Location, is_uri
from pipeline.suites import get_suite, suite_names
from pipeline.tasks.registry import get_task

TEMPLATES_PACKAGE = "dataset_card"
"""The package holding the card's Jinja2 templates (shipped as package data)."""
LICENSE = "apache-2.0"
TITLE = "JAT-format reinforcement-learning episodes"
COLUMN_MEANING = {
    IMAGE_OBSERVATIONS: "per step, the last 4 grey 84x84 frames as one RGBA PNG (JAT's frame stack)",
    TEXT_OBSERVATIONS: "per step, the BabyAI mission string",
    DISCRETE_OBSERVATIONS: "per step, the flattened 7x7x3 egocentric grid and the agent's direction",
    CONTINUOUS_OBSERVATIONS: "per step, the observation vector",
    DISCRETE_ACTIONS: "per step, the action index",
    CONTINUOUS_ACTIONS: "per step, the action vector (clipped to the action space)",
    REWARDS: "per step, the reward received after the action",
}


@dataclass(frozen=True)
class CardConfig:
    """One config as the card shows it: its statistics, or only the YAML entry of an earlier card."""

    name: str
    stats: ConfigStats | None = None
    """Its `meta/<config>/stats.json` (or `pipeline.report.stats.episode_stats`); None if unknown."""
    yaml_entry: dict[str, Any] | None = None
    """The `configs:` entry to keep when there are no statistics."""
    returns_plot: str | None = None
    """Repository-relative path of the config's return histogram, if one is published with the card."""
    stats_file: bool = False
    """True when `meta/<config>/stats.json` (with per-feature statistics) is published with the card."""
    quality: QualityRow | None = None
    """Its score against JAT's expert with a bootstrap CI (`pipeline.report.quality`), if its manifest is at
    hand."""
    clip: str | None = None
    """Repository-relative path of the GIF of its first episode, if one is published with the card."""

    @property
    def total_steps(self) -> int:
        return self.stats.total_steps if self.stats else 0

    def entry(self) -> dict[str, Any]:
        """The `configs:` YAML entry mapping each split to its shard pattern."""
        if self.stats is None:
            if self.yaml_entry is None:
                raise ValueError(f"config {self.name} has neither statistics nor a YAML entry")
            return self.yaml_entry
        files = [{"split": s, "path": p} for s, p in self.stats.data_files.items()]
        return {"config_name": self.name, "data_files": files}


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _score(value: float | None) -> str:
    """A normalised score as `pipeline report` prints it (3 decimals)."""
    return "n/a" if value is None else f"{value:.3f}"


def _template_source(name: str) -> str | None:
    """A template's text from the installed `dataset_card` package (None: jinja2 reports it missing)."""
    template = resources.files(TEMPLATES_PACKAGE).joinpath(name)
    return template.read_text(encoding="utf-8") if template.is_file() else None


def card_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    env.filters["score"] = _score
    return env


def _size_category(episodes: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ):
        if episodes < limit:
            return label
    return "10M<n<100M"


def card_header(configs: list[CardConfig]) -> dict[str, Any]:
    """The YAML metadata: configs with data files per split, license, task categories, tags."""
    suites = sorted({c.stats.suite for c in configs if c.stats} | {c.name.split("-")[0] for c in configs})
    episodes = sum(c.stats.total_episodes for c in configs if c.stats)
    return {
        "pretty_name": TITLE,
        "license": LICENSE,
        "task_categories": ["reinforcement-learning"],
        "tags": [
            "jat",
            "reinforcement-learning",
            "imitation-learning",
            "offline-rl",
            "decision-transformer",
            *suites,
        ],
        "size_categories": [_size_category(episodes)],
        # A config whose episodes were all dropped has no files: listing it would make
        # `load_dataset` fail for every config of the dataset, so it is left out.
        "configs": [e for c in sorted(configs, key=lambda c: c.name) if (e := c.entry())["data_files"]],
        "dataset_info": [
            info for c in sorted(configs, key=lambda c: c.name) if c.stats and (info := _dataset_info(c))
        ],
    }


def _dataset_info(config: CardConfig) -> dict[str, Any] | None:
    """The config's `dataset_info` entry: episodes per split and the shards' bytes.

    `datasets` keys its cache of a local folder on this entry (with the `configs:` patterns, which do
    not change when the shards do): without it, `load_dataset` of a folder rewritten in place (or
    another folder of the same name) returns the rows it cached before. It also checks the episode
    counts on load (`num_examples`; datasets ignores an entry without `num_bytes`).
    """
    splits = [  # num_bytes is datasets' Arrow size, unknown before it loads the split: 0, as unknown
        {"name": split, "num_bytes": 0, "num_examples": s.episodes}
        for split, s in sorted(config.stats.splits.items())
        if s.episodes
    ]
    if not splits:
        return None
    size = sum(s.bytes for s in config.stats.splits.values())
    return {"config_name": config.name, "splits": splits, "download_size": size}


def _schema(configs: list[CardConfig]) -> list[dict[str, Any]]:
    out = []
    for suite in suite_names():
        names = [c.name for c in configs if c.stats and c.stats.suite == suite]
        if not names:
            continue
        features = get_suite(suite).layout.features
        columns = [
            {"name": name, "type": _feature_type(feature), "meaning": COLUMN_MEANING.get(name, "")}
            for name, feature in features.items()
        ]
        out.append({"name": suite, "configs": names, "columns": columns})
    return out


def _feature_type(feature: Any) -> str:
    """`List(List(Value("float32")))` → `list<list<float32>>`, `List(Image())` → `list<image (PNG)>`."""
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list<{_feature_type(inner)}>"
    dtype = getattr(feature, "dtype", None)
    return "image (PNG)" if type(feature).__name__ == "Image" else str(dtype)


def render_from_stats(
    name: str, configs: list[CardConfig], suite_plots: list[str] = (), hub: bool = True
) -> str:
    """The card for dataset `name` (a Hub repo id, or a folder when `hub` is False) holding `configs`.

    A local folder's card names it by its own name, relative (`load_dataset("release", ...)` run
    beside it): the absolute path of the machine that wrote it means nothing once it is copied."""
    if not hub and not is_uri(name):
        name = os.path.basename(os.path.normpath(name)) or name
    if not configs:
        raise PipelineError("a dataset card needs at least one config")
    configs = sorted(configs, key=lambda c: c.name)
    known = [c for c in configs if c.stats]
    example = known[0] if known else configs[0]
    header = yaml.safe_dump(card_header(configs), sort_keys=False, allow_unicode=True)
    suite = example.stats.suite if example.stats else example.name.split("-")[0]
    plots = [{"suite": p.rsplit("/", 1)[-1].removesuffix(".png"), "path": p} for p in sorted(suite_plots)]
    return (
        card_environment()
        .get_template("README.md.j2")
        .render(
            header_yaml=header,
            title=TITLE,
            name=name,
            configs=configs,
            license=LICENSE,
            example_config=example.name,
            example_columns=get_suite(suite).layout.columns if suite in suite_names() else [],
            schema=_schema(configs),
            suite_plots=plots,
            hub=hub,
            stats_files=any(c.stats_file for c in configs),
            quality=[c.quality for c in configs if c.quality],
            quality_bar=JAT_BAR,
            bootstrap_reps=DEFAULT_BOOTSTRAP_REPS,
        )
    )


def card_configs(text: str) -> list[dict[str, Any]]:
    """The `configs:` entries of an existing card (empty when it has no YAML header)."""
    if not text.startswith("---"):
        return []
    try:
        header = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return []
    entries = header.get("configs", []) if isinstance(header, dict) else []
    return [e for e in entries if isinstance(e, dict) and "config_name" in e]


def render_card(location: Location, configs: list[str]) -> str:
    """The README of a dataset folder, from its manifests (figures and clips linked only where they exist)."""
    cards = []
    for config in configs:
        manifest = read_manifest(location, config)
        stats = episode_stats(manifest, get_task(config))
        plot, clip = RETURNS_PLOT.format(config=config), EPISODE_CLIP.format(config=config)
        cards.append(
            CardConfig(
                config,
                stats,
                returns_plot=plot if location.exists(plot) else None,
                stats_file=location.exists(STATS_PATH.format(config=config)),
                quality=quality_row(manifest),
                clip=clip if location.exists(clip) else None,
            )
        )
    suites = sorted({c.stats.suite for c in cards if c.stats})
    plots = [SUITE_PLOT.format(suite=s) for s in suites if location.exists(SUITE_PLOT.format(suite=s))]
    return render_from_stats(location.uri, cards, plots, hub=False)


def write_readme(location: Location) -> None:
    """(Re)write the folder's README.md, its dataset card, for every config the dataset holds:
    merging, never dropping one. `datasets` reads its YAML header to map configs to files."""
    location.write_bytes("README.md", render_card(location, dataset_configs(location)).encode())
