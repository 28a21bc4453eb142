"""Publish throughput: `pipeline publish` to the local Hub-API server, against one giant commit, side by side.

Two measurements, both against tests/hub_server.py on 127.0.0.1 with the real `huggingface_hub` client
(plain LFS transfer: the server has no Xet storage):

1. The demo's subsets (`pipeline demo`'s four tasks, `--episodes` each, recorded here with the
   demo's policies): wall time of `publish` (validation, statistics, figures, card, upload) and of
   loading every config back with `datasets.load_dataset(repo, config)` in a fresh process through
   the same endpoint, checked episode for episode against the local shards.
2. Upload throughput on a larger config (`--big-task`, random policy, `--big-episodes`): MB/s of
   the upload phase of `publish` (bounded commits of `--max-commit-files`), next to the same files
   pushed by `HfApi.create_commit` as one single commit into a fresh repo (the client's and server's
   ceiling for these bytes on this machine), and next to `publish --to-folder` (local disk).

The machine is shared: other processes' load moves every figure, which is why the modes are
measured back to back and reported as a ratio.

    .venv/bin/python benchmarks/publish_throughput.py
    .venv/bin/python benchmarks/publish_throughput.py --skip-demo --max-commit-files 4   # many small commits
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import import_from_tests, make_console

import_from_tests()  # the Hub-API test server and the publish tests' helpers
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["HF_HUB_DISABLE_XET"] = "1"  # read by huggingface_hub at import: the server speaks LFS only

from hub_server import HubServer  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi  # noqa: E402
from publish_helpers import LOAD_SCRIPT, local_digests  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.cli.demo import DEMO_RUNS  # noqa: E402
from pipeline.format.manifest import dataset_configs, read_manifest  # noqa: E402
from pipeline.release.publish import PublishConfig, publish  # noqa: E402
from pipeline.rollout.run import RolloutConfig, rollout  # noqa: E402
from pipeline.runtime.storage import open_location  # noqa: E402

console = make_console(150)


def load_back(server: HubServer, repo: str, configs: list[str], home: Path) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": server.token,
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "0",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, repo, *configs],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode:
        raise SystemExit(f"load_dataset through the local Hub failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def demo_subsets(server: HubServer, work: Path, episodes: int) -> None:
    data = work / "demo"
    for tasks, policy in DEMO_RUNS:
        rollout(
            RolloutConfig(
                out=str(data), tasks=tasks, episodes=episodes, workers=0, policy=policy, progress=False
            )
        )
    configs = dataset_configs(open_location(str(data)))
    started = time.monotonic()
    summary = publish(
        PublishConfig(str(data), repo_id="jat-org/demo", xet=False, progress=False, clips=False)
    )
    seconds = time.monotonic() - started
    load_seconds, loaded = load_back(server, "jat-org/demo", configs, work / "hf-demo")
    same = all(loaded[c] == local_digests(data, c) for c in configs)
    table = Table(title=f"demo subsets ({episodes} episodes per task) → local Hub, then load_dataset back")
    for column in (
        "configs",
        "MB",
        "commits",
        "publish s",
        "of which upload s",
        "load back s",
        "same episodes",
    ):
        table.add_column(column)
    table.add_row(
        ", ".join(configs),
        f"{summary.uploaded_bytes / 1e6:.2f}",
        str(summary.commits),
        f"{seconds:.2f}",
        f"{summary.upload_seconds:.2f}",
        f"{load_seconds:.2f}",
        str(same),
    )
    console.print(table)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def throughput(server: HubServer, work: Path, task: str, episodes: int, max_files: int, repeats: int) -> None:
    data = work / "big"
    rollout(
        RolloutConfig(
            out=str(data),
            tasks=(task,),
            episodes=episodes,
            workers=0,
            policy="random",
            episodes_per_shard=max(1, episodes // 20),
            progress=False,
        )
    )
    manifest = read_manifest(open_location(str(data)), task)
    megabytes = sum(s.num_bytes for s in manifest.shards) / 1e6
    api = HfApi(endpoint=server.url, token=server.token)
    times: dict[str, list[float]] = {"all": [], "single": [], "folder": []}
    sizes: dict[str, float] = {"single": megabytes}
    commits: dict[str, int] = {"single": 1}

    def ours(i: int) -> None:
        summary = publish(
            PublishConfig(
                str(data),
                repo_id=f"jat-org/big-{i}",
                configs=(task,),
                xet=False,
                progress=False,
                max_commit_files=max_files,
                clips=False,  # upload throughput only: the card's clips are drawn, not uploaded, time
            )
        )
        times["all"].append(summary.upload_seconds)
        sizes["all"], commits["all"] = summary.uploaded_bytes / 1e6, summary.commits

    def single(i: int) -> None:
        api.create_repo(f"jat-org/big-single-{i}", repo_type="dataset")
        operations = [CommitOperationAdd(s.path, str(data / s.path)) for s in manifest.shards]
        started = time.monotonic()
        api.create_commit(
            f"jat-org/big-single-{i}", operations, commit_message="one commit", repo_type="dataset"
        )
        times["single"].append(time.monotonic() - started)

    def folder(i: int) -> None:
        summary = publish(
            PublishConfig(
                str(data),
                to_folder=str(work / f"big-folder-{i}"),
                configs=(task,),
                progress=False,
                clips=False,
            )
        )
        times["folder"].append(summary.upload_seconds)
        sizes["folder"], commits["folder"] = summary.uploaded_bytes / 1e6, summary.commits

    for i in range(repeats):  # interleaved, order alternating, so load from other processes hits all modes
        for mode in (ours, single, folder) if i % 2 == 0 else (single, ours, folder):
            mode(i)
    rerun_started = time.monotonic()
    rerun = publish(
        PublishConfig(
            str(data), repo_id="jat-org/big-0", configs=(task,), xet=False, progress=False, clips=False
        )
    )
    rerun_seconds = time.monotonic() - rerun_started

    table = Table(
        title=f"{task}: {len(manifest.shards)} shards, {megabytes:.1f} MB of Parquet; "
        f"median (min-max) of {repeats} runs"
    )
    for column in ("mode", "MB", "commits", "upload s", "MB/s", "vs one commit"):
        table.add_column(column)
    labels = {
        "all": f"publish → local Hub: shards + manifest, stats, figures, card ({max_files} files/commit)",
        "single": "create_commit of the shards alone, one commit",
        "folder": "publish --to-folder (local disk): shards + manifest, stats, figures, card",
    }
    single_rate = megabytes / statistics.median(times["single"])
    for key, label in labels.items():
        rate = sizes[key] / statistics.median(times[key])
        table.add_row(
            label,
            f"{sizes[key]:.1f}",
            str(commits[key]),
            _median(times[key]),
            f"{rate:.1f}",
            f"{rate / single_rate:.2f}x",
        )
    console.print(table)
    console.print(
        f"re-run after success: {rerun.commits} commit(s), {rerun.uploaded_files} file(s) uploaded, "
        f"{rerun.unchanged_files} unchanged, {rerun_seconds:.2f} s (validation + statistics + diff)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10, help="episodes per demo task")
    parser.add_argument("--big-task", default="mujoco-halfcheetah")
    parser.add_argument("--big-episodes", type=int, default=200)
    parser.add_argument("--max-commit-files", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-demo", action="store_true", help="only the throughput measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jat-publish-bench-") as tmp:
        work = Path(tmp)
        with HubServer(work / "hub") as server:
            os.environ["HF_ENDPOINT"], os.environ["HF_TOKEN"] = server.url, server.token
            if not args.skip_demo:
                demo_subsets(server, work, args.episodes)
            throughput(server, work, args.big_task, args.big_episodes, args.max_commit_files, args.repeats)


if __name__ == "__main__":
    main()
