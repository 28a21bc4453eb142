"""Loading a dataset from anywhere with `datasets`: a local folder, an S3 copy or a Hub repo.

`datasets` reads the YAML header of README.md to map each config name to its data files; with
it, a local folder, an S3 copy and the Hub repo all load the same way, offline. The README is
the same dataset card `pipeline publish` uploads (`pipeline.release.card`), rendered from the manifests.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow.fs as pafs

from pipeline.errors import PipelineError
from pipeline.format.manifest import read_manifest
from pipeline.format.schema import DATA_DIR, MANIFEST_PATH
from pipeline.release.card import write_readme
from pipeline.runtime.storage import Location, is_uri, open_location


def load_config(uri: str, config: str, split: str | None = None):
    """`datasets.load_dataset` for a dataset anywhere: local folder, Hub repo or object store.

    Local folders and Hub repos load through their README's `configs:` (plain
    `load_dataset(uri, config)`). Object stores (s3://...) are mirrored first: `datasets`
    refuses every remote URL under HF_HUB_OFFLINE=1, which our Makefile and most clusters
    without Hub access set, so the config's shards are copied into the datasets cache,
    each checked against the manifest's sha256, and loaded from there.
    """
    from datasets import load_dataset

    if not is_uri(uri):
        return load_dataset(uri, config, split=split)
    local = mirror_config(open_location(uri), config)
    return load_dataset(str(local), config, split=split)


def mirror_config(location: Location, config: str, cache_dir: Path | None = None) -> Path:
    """Copy one config of a remote dataset into a local folder that `load_dataset` reads.

    Shards whose cached copy already has the manifest's checksum are not fetched again; each
    fetched shard is written under a temporary name and renamed, so an interrupted copy never
    leaves a shard that looks complete.
    """
    from datasets import config as datasets_config

    manifest = read_manifest(location, config)
    key = hashlib.sha256(location.uri.rstrip("/").encode()).hexdigest()[:16]
    root = (cache_dir or Path(datasets_config.HF_DATASETS_CACHE) / "jat-pipeline-mirror") / key
    wanted = {shard.path for shard in manifest.shards}
    data_dir = DATA_DIR.format(config=config)
    for stale in (root / data_dir).glob("*.parquet"):
        if f"{data_dir}/{stale.name}" not in wanted:  # left by an earlier rollout of this config
            stale.unlink()
    local = Location(pafs.LocalFileSystem(), str(root), str(root))
    for shard in manifest.shards:
        target = root / shard.path
        if target.exists() and local.sha256(str(target)) == shard.sha256:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()  # taken while copying: the copy is not read back
        with location.fs.open_input_stream(location.path(shard.path)) as src, open(partial, "wb") as dst:
            while block := src.read(8 << 20):
                digest.update(block)
                dst.write(block)
        if digest.hexdigest() != shard.sha256:
            partial.unlink()
            raise PipelineError(
                f"{location.uri}/{shard.path} does not match its manifest checksum: "
                f"run `pipeline validate {location.uri}` and re-run the rollout of {config}"
            )
        os.replace(partial, target)
    manifest_path = MANIFEST_PATH.format(config=config)
    local.write_bytes(manifest_path, location.read_bytes(manifest_path))
    write_readme(local)
    return root
