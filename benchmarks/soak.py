"""Soak: one long rollout (>= 1M steps) with an actor or the driver killed every minute, compared
with the serial run, its memory sampled throughout.

The run is a real `python -m pipeline.cli rollout` on a multi-node Ray cluster on this machine
(`ray.cluster_utils.Cluster`: a head with no CPU for work and two 1-CPU worker nodes). Every
`--every` seconds one failure strikes, actor and driver in turn: SIGKILL of a random rollout actor
(the run goes on), or SIGKILL of the driver and of its actors (a machine crash), after which the same
command runs again with `--resume`. When the run has exited 0, its episodes (ids, digests, splits)
and shards (paths, sha256) must equal those of the serial run (`--workers 0`, no failure), and
`pipeline validate` must accept the folder. Memory: the resident set of the driver and of the
actors, sampled every 2 s, summarised per driver incarnation (first and last fifth of its samples):
flat means the last fifth is within 10% of the first.

    .venv/bin/python benchmarks/soak.py --episodes 1000 --json soak.json   # HalfCheetah: 1M steps
    .venv/bin/python benchmarks/soak.py --episodes 6000 --every 60         # 6M steps, ~10 failures
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import cluster_actors

CONFIG = "mujoco-halfcheetah"  # 1,000 steps an episode whatever the policy: 1,000 episodes = 1M steps
RUN_TIMEOUT_S = 3 * 3600


def _episodes(manifest: dict) -> set[tuple]:
    """(id, digest, split) of every stored episode: what must equal the serial run's."""
    return {(e["episode_id"], e["digest"], s["split"]) for s in manifest["shards"] for e in s["episodes"]}


def _cli(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("JAT_PIPELINE_FAULTS", "RAY_ADDRESS")}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], env=env, text=True, **kwargs)


class Soak:
    def __init__(self, scratch: Path, args: argparse.Namespace) -> None:
        from ray.cluster_utils import Cluster

        self.scratch, self.args = scratch, args
        self.rollout = ["rollout", "--tasks", CONFIG, "--policy", "random", "--episodes", str(args.episodes)]
        self.rollout += ["--seed", "5", "--no-progress"]
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        self.nodes = [self.cluster.add_node(num_cpus=1) for _ in range(2)]
        self.cluster.wait_for_nodes()
        self.samples: list[dict] = []
        self.events: list[dict] = []
        self.driver: subprocess.Popen | None = None
        self.incarnation = 0

    def actors(self) -> list[psutil.Process]:
        return cluster_actors(self.nodes)

    def _sample(self, stop: threading.Event) -> None:
        while not stop.wait(2.0):
            driver = self.driver
            rss = {"t": time.monotonic(), "incarnation": self.incarnation, "driver": None, "actors": 0}
            with contextlib.suppress(psutil.Error, AttributeError):
                rss["driver"] = psutil.Process(driver.pid).memory_info().rss if driver else None
            rss["by_actor"] = {}
            for actor in self.actors():
                with contextlib.suppress(psutil.Error):
                    rss["by_actor"][actor.pid] = actor.memory_info().rss
            rss["actors"] = sum(rss["by_actor"].values())
            self.samples.append(rss)

    def _start(self, out: Path, resume: bool) -> subprocess.Popen:
        command = [sys.executable, "-m", "pipeline.cli", *self.rollout, "--workers", "2"]
        command += ["--address", self.cluster.address, "--shared-fs", "--out", str(out)]
        command += ["--resume"] if resume else []
        env = {k: v for k, v in os.environ.items() if k not in ("JAT_PIPELINE_FAULTS", "RAY_ADDRESS")}
        log = open(self.scratch / f"driver-{self.incarnation}.log", "w")  # noqa: SIM115 (closed with the run)
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)

    def run(self, out: Path) -> dict:
        started = time.monotonic()
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(stop,), daemon=True)
        sampler.start()
        self.driver, resume, kill_driver_next, code = self._start(out, False), False, False, None
        next_strike = time.monotonic() + self.args.every
        try:
            while time.monotonic() - started < RUN_TIMEOUT_S:
                code = self.driver.poll()
                if code is not None and not resume:
                    break
                if code is not None:  # a driver we killed: resume
                    self.incarnation += 1
                    self.driver, resume = self._start(out, True), False
                    continue
                if time.monotonic() >= next_strike:
                    next_strike = time.monotonic() + self.args.every
                    actors = self.actors()
                    if kill_driver_next:
                        self.driver.send_signal(signal.SIGKILL)
                        for actor in actors:
                            with contextlib.suppress(psutil.Error):
                                actor.kill()
                        self.driver.wait()
                        resume = True
                        self.events.append({"t": time.monotonic() - started, "kill": "driver"})
                    elif actors:
                        with contextlib.suppress(psutil.Error):
                            actors[len(self.events) % len(actors)].kill()
                        self.events.append({"t": time.monotonic() - started, "kill": "actor"})
                    kill_driver_next = not kill_driver_next
                time.sleep(0.2)
        finally:
            stop.set()
            sampler.join()
        return {
            "exit_code": code,
            "seconds": time.monotonic() - started,
            "incarnations": self.incarnation + 1,
        }

    def memory(self) -> list[dict]:
        """Per driver incarnation: driver and actor RSS (MB), first vs last fifth of the samples."""
        out = []
        for incarnation in sorted({s["incarnation"] for s in self.samples}):
            rows = [s for s in self.samples if s["incarnation"] == incarnation and s["driver"]]
            if len(rows) < 10:
                continue
            fifth = max(1, len(rows) // 5)
            entry = {"incarnation": incarnation, "samples": len(rows)}
            for key in ("driver", "actors"):
                first = statistics.mean(r[key] for r in rows[:fifth]) / 2**20
                last = statistics.mean(r[key] for r in rows[-fifth:]) / 2**20
                entry[key] = {
                    "first_mb": round(first, 1),
                    "last_mb": round(last, 1),
                    "flat": last <= 1.1 * first,
                }
            out.append(entry)
        return out

    def actor_memory(self) -> list[dict]:
        """Per actor process (a killed actor's replacement is another): RSS (MB), first vs last fifth."""
        out = []
        for pid in sorted({pid for s in self.samples for pid in s.get("by_actor", {})}):
            series = [s["by_actor"][pid] for s in self.samples if pid in s.get("by_actor", {})]
            if len(series) < 10:
                continue
            fifth = max(1, len(series) // 5)
            first = statistics.mean(series[:fifth]) / 2**20
            last = statistics.mean(series[-fifth:]) / 2**20
            out.append(
                {
                    "pid": pid,
                    "samples": len(series),
                    "first_mb": round(first, 1),
                    "last_mb": round(last, 1),
                    "flat": last <= 1.1 * first,
                }
            )
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000, help="HalfCheetah episodes (1,000 steps each)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between failures")
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="jat-soak-"))
    soak = Soak(scratch, args)
    try:
        serial_started = time.monotonic()
        _cli(
            [*soak.rollout, "--workers", "0", "--out", str(scratch / "serial")],
            check=True,
            capture_output=True,
        )
        serial_s = time.monotonic() - serial_started
        outcome = soak.run(scratch / "soak")
        manifests = [
            json.loads((scratch / name / "meta" / CONFIG / "manifest.json").read_text())
            for name in ("serial", "soak")
        ]
        valid = _cli(["validate", str(scratch / "soak")], capture_output=True).returncode == 0
        episodes = [_episodes(m) for m in manifests]
        ids = [e["episode_id"] for s in manifests[1]["shards"] for e in s["episodes"]]
        report = {
            **outcome,
            "serial_seconds": round(serial_s, 1),
            "steps": sum(e["length"] for s in manifests[1]["shards"] for e in s["episodes"]),
            "episodes": len(episodes[1]),
            "kills": {kind: sum(e["kill"] == kind for e in soak.events) for kind in ("actor", "driver")},
            "valid": valid,
            "duplicated": len(ids) - len(set(ids)),
            "missing": len({e[0] for e in episodes[0]} - set(ids)),
            "differing": len(episodes[0] ^ episodes[1]),
            # informational: how episodes are grouped into shards may follow the worker count
            "shards_equal": [(s["path"], s["sha256"]) for s in manifests[0]["shards"]]
            == [(s["path"], s["sha256"]) for s in manifests[1]["shards"]],
            "memory": soak.memory(),
            "actor_memory": soak.actor_memory(),
        }
    finally:
        soak.cluster.shutdown()
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    counts = (report["duplicated"], report["missing"], report["differing"], outcome["exit_code"])
    bad = not valid or any(counts)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
