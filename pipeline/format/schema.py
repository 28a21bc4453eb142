"""The dataset schema, declared once: JAT's features per domain, and everything derived from them.

Writer, validator, publisher and model loader all import this module. The Arrow schema used to
write shards is derived from the `datasets.Features` below, never written by hand, and the
features metadata embedded in every shard uses the `Sequence` spelling so that `datasets` 2.x
(which JAT pins) can still read the files while current `datasets` reads them too.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from datasets import Features, Image, List, Value

from pipeline.format.columns import (
    CONTINUOUS_ACTIONS,
    CONTINUOUS_OBSERVATIONS,
    DISCRETE_ACTIONS,
    DISCRETE_OBSERVATIONS,
    IMAGE_OBSERVATIONS,
    REWARDS,
    TEXT_OBSERVATIONS,
)

FORMAT_VERSION = 1

# Per-step columns of each of JAT's three layouts, exactly JAT's names and types: one row per
# episode. A suite names its layout (`pipeline.suites.layouts`): Atari stores images, BabyAI a
# mission and integers, every continuous-control suite float vectors.
LAYOUT_FEATURES: dict[str, Features] = {
    "image": Features(
        {
            IMAGE_OBSERVATIONS: List(Image()),
            DISCRETE_ACTIONS: List(Value("int64")),
            REWARDS: List(Value("float32")),
        }
    ),
    "mission": Features(
        {
            TEXT_OBSERVATIONS: List(Value("string")),
            DISCRETE_OBSERVATIONS: List(List(Value("int64"))),
            DISCRETE_ACTIONS: List(Value("int64")),
            REWARDS: List(Value("float32")),
        }
    ),
    "vector": Features(
        {
            CONTINUOUS_OBSERVATIONS: List(List(Value("float32"))),
            CONTINUOUS_ACTIONS: List(List(Value("float32"))),
            REWARDS: List(Value("float32")),
        }
    ),
}

# Path templates, relative to the dataset root (local folder, S3 prefix or Hub repo): every file a
# dataset holds is named here.
DATA_DIR = "data/{config}"
SHARD_NAME = "{split}-{index:05d}.parquet"
SHARD_GLOB = "data/{config}/{split}-*.parquet"
MANIFEST_PATH = "meta/{config}/manifest.json"
META_DIR = "meta/{config}"
"""Everything about a config that is not its data: manifest, plan, unit records, stats, figures."""
SHARD_RECORD_DIR = "meta/{config}/shards"
UNIT_RECORD_NAME = "{split}-{index:05d}.json"
"""A finished unit's record, in SHARD_RECORD_DIR, named as its shard."""
PLAN_PATH = "meta/{config}/plan.json"
STATS_PATH = "meta/{config}/stats.json"
RTG_PATH = "meta/{config}/returns_to_go.parquet"
RETURNS_PLOT = "meta/{config}/returns.png"
EPISODE_CLIP = "meta/{config}/episode.gif"
PLOTS_DIR = "meta/plots"
SUITE_PLOT = "meta/plots/{suite}.png"
TMP_DIR = ".tmp"
INFO_PATH = "meta/info.json"
RUN_LEASE_PATH = "meta/run.json"  # the rollout currently writing this folder (see collector.RolloutWorker)
SPLITS = ("train", "test")

# Per-episode metadata lives in the manifest sidecar, never in the Parquet files: JAT's
# processor pads every column it is given, so an extra column would silently reach the model.
EPISODE_METADATA = ("episode_id", "seed", "length", "return", "success", "policy")


def _sequence_spelling(node: Any) -> Any:
    """Rewrite `List` feature dicts as `Sequence`, which every `datasets` release can parse."""
    if isinstance(node, dict):
        out = {k: _sequence_spelling(v) for k, v in node.items()}
        if out.get("_type") == "List":
            out["_type"] = "Sequence"
        return out
    return node


def arrow_schema(features: Features) -> pa.Schema:
    """The Arrow schema shards are written with, derived from a layout's features."""
    metadata = {"info": {"features": _sequence_spelling(features.to_dict())}}
    return features.arrow_schema.with_metadata({"huggingface": json.dumps(metadata)})
