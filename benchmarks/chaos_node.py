"""The `train-node` kind of chaos_stages.py: the node training an expert is lost at a random moment.

A 3-node local Ray cluster (`ray.cluster_utils.Cluster`: a head with no CPU for work, two 1-CPU
worker nodes), moto's S3 server on 127.0.0.1, and `train-experts --address <cluster> --out
s3://jat/run-<i>` with stable-baselines3's PPO at the tests' tiny settings, uploading every second.
The kill comes uniformly within the lifetime of the reference's training task process (training,
uploads, evaluation, metadata; not the imports before it, nor the driver's reports after); it
removes the node running the task (`Cluster.remove_node(allow_graceful=False)`: its raylet and
every process it started die at once, as a lost machine). The same command is not run again: the
driver must run the task again on the survivor, resumed from the store, and exit 0. A node is added
back before the next run.

After each run the store is copied to a local folder and checked as the other train kinds are
(`TrainBench.check`: invalid, duplicated, missing, differing), against what the store held once
the lost node's task process was gone: the newest checkpoint of its last whole upload round
(`checkpoints/.uploaded.json`), the curve and the snapshots. Also counted as differing: a struck
run whose driver did not say, in one line, that it trains the expert again from that step, or
whose expert was finished on the node that was lost; invalid: a run exiting non-zero, or
`pipeline evaluate-experts` refusing the s3:// store.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
from chaos import KindReport
from chaos_stages import (
    CONFIG,
    RUN_TIMEOUT_S,
    TrainBench,
    _env,
    _last_line,
    _sets,
    _start,
    _wait,
    sha256,
)

STEPS = 3072
TASK_TITLE = f"ray::task-{CONFIG}"  # the process title of the training task (`executor_tasks.run_tasks`)


def node_args(address: str) -> list[str]:
    from expert_helpers import TINY_SB3_PPO

    return [
        "train-experts", "--tasks", CONFIG, "--backend", "sb3", "--steps", str(STEPS), "--num-cpus", "1",
        *_sets(TINY_SB3_PPO), "--eval-episodes", "2", "--upload-every", "1", "--no-progress",
        "--address", address,
    ]  # fmt: skip


def _moto(scratch: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=(scratch / "moto.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    return server, f"http://127.0.0.1:{port}"


class NodeBench(TrainBench):
    """`train-node`: see the module's docstring."""

    def __init__(self, scratch: Path, rng: random.Random) -> None:
        import boto3
        from ray.cluster_utils import Cluster

        self.kind, self.scratch, self.rng, self.said = "train-node", scratch, rng, ""
        self.server, endpoint = _moto(scratch)
        os.environ.update(  # before the cluster starts: its nodes' workers inherit them
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint,
            XDG_CACHE_HOME=str(scratch / "node-caches"),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                boto3.client("s3").create_bucket(Bucket="jat")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        self._top_up()
        self.argv = node_args(self.cluster.address)
        out = "s3://jat/reference"
        process = _start([*self.argv, "--out", out], scratch / "reference.log", _env())
        started = time.monotonic()
        placed = self._task(process)
        self.folder_s = time.monotonic() - started
        if placed is not None:  # the kill comes while the task lives, not while the driver writes reports
            with contextlib.suppress(psutil.Error):
                psutil.Process(placed[1]).wait(timeout=RUN_TIMEOUT_S)
        self.duration_s = time.monotonic() - started - self.folder_s
        if placed is None or _wait(process) != 0:
            raise RuntimeError(f"the reference run failed: {_last_line(scratch / 'reference.log')}")
        self.reference = json.loads(self._store(out).location.read_bytes(f"{CONFIG}/metadata.json"))
        print(
            f"train-node: reference {self.reference['steps_trained']} steps, task process after "
            f"{self.folder_s:.1f} s, living {self.duration_s:.1f} s",
            flush=True,
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cluster.shutdown()
        self.server.terminate()
        self.server.wait()

    def _top_up(self) -> None:
        while len(self.cluster.worker_nodes) < 2:
            self.cluster.add_node(num_cpus=1)
        self.cluster.wait_for_nodes()

    def _store(self, uri: str):
        from experts.store import ExpertStore

        return ExpertStore(uri, cache_dir=str(self.scratch / "reader"))

    def _task(self, process: subprocess.Popen) -> tuple[object, int] | None:
        """The node running the training task and the task's pid, once it runs (None: the run ended)."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            for node in self.cluster.worker_nodes:
                with contextlib.suppress(psutil.Error):
                    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
                    for child in raylet.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            if child.cmdline()[:1] == [TASK_TITLE]:
                                return node, child.pid
            time.sleep(0.05)
        return None

    def run(self, index: int, report: KindReport) -> bool:
        uri = f"s3://jat/run-{index}"
        log = self.scratch / f"run-{index}.log"
        process = _start([*self.argv, "--out", uri], log, _env())
        placed = self._task(process)
        delay = self.rng.uniform(0, self.duration_s)
        time.sleep(delay)
        struck = placed is not None and _running_task(placed[1]) and process.poll() is None
        store = self._store(uri)
        resumed_from, killed_curve, killed_snapshots = 0, [], {}
        if struck:
            node = placed[0]
            lose_node(self.cluster, node)
            at_kill = self.scratch / str(index) / "at-kill"
            self._copy(uri, at_kill)  # what the store held once the lost node's task was gone
            resumed_from = store.uploaded_checkpoint_step(CONFIG, "sb3") or 0
            expert = at_kill / CONFIG
            from chaos_stages import _curve

            killed_curve = _curve(expert / "checkpoints" / "learning_curve.csv")
            final = self.scratch / str(index) / "experts" / CONFIG  # where the check looks for them
            killed_snapshots = {
                final / path.relative_to(expert): sha256(path) for path in self._snapshot_files(expert)
            }
            for path in [*_checkpoints_of(expert), *self._snapshot_files(expert)]:
                self._bad(report, "invalid", _loads_sb3(path), f"run {index} in the store at the kill")
        code = _wait(process)
        self._top_up()
        seen = "" if placed else ", the task never seen"
        upload = f", the node lost with step {resumed_from} uploaded" if struck else ""
        self.said = f"(kill after {delay:.1f} s{seen}{upload})"
        report.exit_codes[str(code)] = report.exit_codes.get(str(code), 0) + 1
        if code is None:
            report.hung += 1
            report.notes.append(f"run {index}: train-experts hung")
            return struck
        if code != 0:
            self._bad(report, "invalid", f"run {index}: exited {code}: {_last_line(log)}")
            return struck
        said = " ".join(log.read_text(errors="replace").split())
        retried = re.search(rf"{CONFIG}: [^;]+ \(\w+\); training again \(retry 1 of 2\) ", said)
        if struck:
            report.resumed += bool(retried)
            expected = f"from step {resumed_from:,}" if resumed_from else "from step 0"
            if not retried or expected not in said[retried.end() : retried.end() + 40]:
                self._bad(report, "differing", f"run {index}: no retry line {expected!r}: {_last_line(log)}")
        elif retried:
            self._bad(report, "invalid", f"run {index}: a retry without a lost node")
        out = self.scratch / str(index) / "experts"
        self._copy(uri, out)
        meta = json.loads((out / CONFIG / "metadata.json").read_text())
        if struck and meta["resources"]["ray"]["node_id"] == placed[0].node_id:
            self._bad(report, "differing", f"run {index}: finished on the node that was lost")
        self.check(index, report, out, resumed_from, killed_curve, killed_snapshots)
        return struck

    def evaluate_store(self, out: Path) -> int:
        """`pipeline evaluate-experts` on the s3:// store the local copy `out` was made from."""
        from pipeline.cli import main

        uri = (out.parent / "s3-uri").read_text()
        with open(out.parent / "evaluate.log", "w") as log, contextlib.redirect_stdout(log):
            return main(["evaluate-experts", uri, "--tasks", CONFIG, "--episodes", "2"])

    def _copy(self, uri: str, into: Path) -> None:
        """The whole store under `uri` as a local folder."""
        store = self._store(uri)
        base = store.location.root.rstrip("/")
        import pyarrow.fs as pafs

        for info in store.location.list("", recursive=True):
            if info.type != pafs.FileType.File:
                continue
            target = into / info.path[len(base) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.location.fs.open_input_stream(info.path).read())
        into.parent.mkdir(parents=True, exist_ok=True)  # a store still empty holds no file
        (into.parent / "s3-uri").write_text(uri)


def _running_task(pid: int) -> bool:
    """Whether the process still runs the training task (Ray keeps a worker process for later tasks
    once one returned, retitled `ray::IDLE`: losing its node then loses no task)."""
    try:
        return psutil.Process(pid).cmdline()[:1] == [TASK_TITLE]
    except psutil.Error:
        return False


def lose_node(cluster, node) -> None:
    """The node gone as a lost machine: its raylet and every process it started SIGKILLed at once
    (`remove_node` kills the raylet; a worker notices its raylet's death only later, and would
    meanwhile go on uploading)."""
    children = []
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(node.all_processes["raylet"][0].process.pid).children(recursive=True)
    cluster.remove_node(node, allow_graceful=False)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=30)


def _checkpoints_of(expert: Path) -> list[Path]:
    return sorted((expert / "checkpoints" / "sb3").glob("model_*_steps.zip"))


def _loads_sb3(path: Path) -> str:
    from chaos_stages import _loads

    return _loads(path, "train-sb3")
