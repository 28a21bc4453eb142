"""The dataset folder's README and loading from anywhere.

`datasets` reads the YAML header of README.md to map each config name to its data files; with
it, a local folder, an S3 copy and the Hub repo all load the same way, offline. The README is
the same dataset card `pipeline publish` uploads (`pipeline.card`), rendered from the manifests.
"""

from __future__ import annotations

from pipeline.card import render_card
from pipeline.manifest import dataset_configs, read_manifest
from pipeline.schema import SHARD_GLOB, SPLITS
from pipeline.storage import Location, open_location


def write_readme(location: Location) -> None:
    """(Re)write README.md for every config the dataset holds, merging, never dropping one."""
    location.write_bytes("README.md", render_card(location, dataset_configs(location)).encode())


def load_config(uri: str, config: str, split: str | None = None):
    """`datasets.load_dataset` for a dataset anywhere: local folder, Hub repo or object store.

    Local folders and Hub repos load through their README's `configs:` (plain
    `load_dataset(uri, config)`); object stores (s3://…) through fsspec with the same files.
    """
    from datasets import load_dataset

    if "://" not in uri:
        return load_dataset(uri, config, split=split)
    location = open_location(uri)
    totals = read_manifest(location, config).totals()
    root = uri.rstrip("/")
    splits = [s for s in SPLITS if totals[s]["episodes"]]
    data_files = {s: f"{root}/{SHARD_GLOB.format(config=config, split=s)}" for s in splits}
    return load_dataset("parquet", data_files=data_files, split=split)
