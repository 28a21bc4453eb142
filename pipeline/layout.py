"""The dataset folder's README: the `configs:` YAML that makes `load_dataset(DIR, config)` work.

`datasets` reads the YAML header of README.md to map each config name to its data files; with
it, a local folder, an S3 copy and the Hub repo all load the same way, offline.
"""

from __future__ import annotations

import yaml

from pipeline.manifest import dataset_configs, read_manifest
from pipeline.schema import SHARD_GLOB, SPLITS
from pipeline.storage import Location, open_location


def configs_header(location: Location, configs: list[str]) -> dict:
    entries = []
    for config in configs:
        totals = read_manifest(location, config).totals()
        files = [
            {"split": split, "path": SHARD_GLOB.format(config=config, split=split)}
            for split in SPLITS
            if totals[split]["episodes"]
        ]
        entries.append({"config_name": config, "data_files": files})
    return {"license": "apache-2.0", "task_categories": ["reinforcement-learning"], "configs": entries}


def write_readme(location: Location) -> None:
    """(Re)write README.md for every config the dataset holds, merging, never dropping one."""
    configs = dataset_configs(location)
    header = yaml.safe_dump(configs_header(location, configs), sort_keys=False)
    lines = [
        f"---\n{header}---\n",
        "# JAT-format dataset (jat-pipeline)\n",
        "One row per episode, JAT's features. Load a subset with:\n",
        "```python\nfrom datasets import load_dataset\n"
        f'ds = load_dataset("{location.uri}", "{configs[0] if configs else "CONFIG"}", split="train")\n```\n',
        "| config | train episodes | test episodes | train steps |",
        "|---|---|---|---|",
    ]
    for config in configs:
        t = read_manifest(location, config).totals()
        lines.append(
            f"| {config} | {t['train']['episodes']} | {t['test']['episodes']} | {t['train']['steps']} |"
        )
    location.write_bytes("README.md", ("\n".join(lines) + "\n").encode())


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
    data_files = {
        s: f"{uri.rstrip('/')}/{SHARD_GLOB.format(config=config, split=s)}"
        for s in SPLITS
        if totals[s]["episodes"]
    }
    return load_dataset("parquet", data_files=data_files, split=split)
