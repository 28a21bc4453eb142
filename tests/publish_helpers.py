"""Shared pieces of the publishing tests: partial dataset copies and digests of episodes.

The dataset itself is conftest's `sample_dataset` (four tasks, one per suite, recorded with the
real rollout); it is read-only here, and tests that need another layout copy configs out of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.format.manifest import read_manifest
from pipeline.runtime.storage import open_location

# conftest.SAMPLE_TASKS, sorted as `dataset_configs` lists them
CONFIGS = ("atari-breakout", "babyai-go-to", "metaworld-reach", "mujoco-hopper")


def copy_configs(dataset: Path, dest: Path, configs: tuple[str, ...]) -> Path:
    """A dataset folder holding only `configs` of `dataset` (a later, separate rollout of them)."""
    for config in configs:
        shutil.copytree(dataset / "data" / config, dest / "data" / config)
        shutil.copytree(dataset / "meta" / config, dest / "meta" / config)
    shutil.copy(dataset / "meta" / "info.json", dest / "meta" / "info.json")
    return dest


def table_digest(table: pa.Table) -> str:
    """A digest of every value of every episode, independent of how the table is chunked."""
    return hashlib.sha256(json.dumps(table.to_pylist(), sort_keys=True, default=repr).encode()).hexdigest()


def local_digests(dataset: Path, config: str) -> dict[str, str]:
    """Per-split digest of the episodes of `config`, read with pyarrow in manifest order."""
    location = open_location(str(dataset))
    manifest = read_manifest(location, config)
    out = {}
    for split in ("train", "test"):
        tables = [pq.read_table(dataset / s.path) for s in manifest.shards if s.split == split]
        out[split] = table_digest(pa.concat_tables(tables))
    return out


LOAD_SCRIPT = """
import hashlib, json, sys
from datasets import load_dataset
out = {}
for config in sys.argv[2:]:
    ds = load_dataset(sys.argv[1], config)
    out[config] = {split: hashlib.sha256(json.dumps(ds[split].data.table.to_pylist(), sort_keys=True,
                   default=repr).encode()).hexdigest() for split in ds}
print(json.dumps(out))
"""
