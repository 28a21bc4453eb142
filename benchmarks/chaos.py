"""Chaos: randomised kills over every phase of a rollout, counted against the serial run.

Every run is a real `python -m pipeline.cli rollout` driving a real multi-node Ray cluster on this
machine (`ray.cluster_utils.Cluster`: a head with no CPU for work and two 1-CPU worker nodes), and
every run meets one failure of its kind:

- actor-random:  SIGKILL of a rollout actor at a random moment;
- actor-aimed:   a crash point armed at a unit end, chosen at random: a worker between its shard and
                 its record, between its record and the result's delivery, or killed by the driver
                 right after it took the result (`pipeline.runtime.faults`);
- driver:        SIGKILL of the driver and of its actors at a random moment, as a machine crash;
- driver-point:  a crash at the k-th file committed by any process of the run (k random): the driver
                 or an actor, from the first byte written to the last;
- node:          a worker node's raylet and its processes killed without warning at a random moment
                 (a new node joins before the next run);
- disk:          the output on a tmpfs of random size, from a twentieth of what the run needs to more
                 than all of it; a full disk is then grown and the run resumed;
- s3:            the output on a moto S3 server reached through a proxy that drops connections at
                 random (reset mid-request), with probability 2-10% each;
- damage:        a finished dataset (a copy of the serial run) damaged on disk at random: a committed
                 shard, unit record or the manifest (each kind a third of the runs) truncated (to a
                 random length), one random byte flipped, or deleted; then `--resume` on the cluster
                 must repair it, and its shards must equal the serial run's file for file (path and
                 sha256).

A run that exits 0 must leave valid data equal to the serial run's, episode by episode. A run
that exits non-zero must be completed by `--resume` (no fault armed) into the same. Counted per
kind: runs, failures that struck (a kill that happened before the run ended), exit codes, runs
resumed, and the runs whose final data was invalid, held duplicated or missing episodes, or
differed from the serial run; plus any run that hung past its bound. The script exits 1 when
any of the last four is non-zero.

    .venv/bin/python benchmarks/chaos.py --runs 50                     # every kind, ~2 h on 2 cores
    .venv/bin/python benchmarks/chaos.py --runs 5 --kinds actor-aimed,node --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

KINDS = ("actor-random", "actor-aimed", "driver", "driver-point", "node", "disk", "s3", "damage")
CONFIG = "metaworld-reach"
ARGS = ["--tasks", CONFIG, "--episodes", "40", "--episodes-per-shard", "2", "--seed", "11"]
AIMED_POINTS = ("unit.shard_committed", "unit.record_written", "driver.received.UnitResult")
RUN_TIMEOUT_S = 300


@dataclass
class KindReport:
    kind: str
    runs: int = 0
    struck: int = 0
    exit_codes: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    invalid: int = 0
    duplicated: int = 0
    missing: int = 0
    differing: int = 0
    hung: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return self.invalid + self.duplicated + self.missing + self.differing + self.hung


def cluster_actors(nodes: list) -> list[psutil.Process]:
    """Rollout actors on `nodes` of a `ray.cluster_utils.Cluster` only (other Ray instances on the
    machine are not ours): the raylets' child processes running a remote actor."""
    found = []
    for node in nodes:
        for info in node.all_processes.get("raylet", []):
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(info.process.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if "_Remote" in " ".join(child.cmdline()):
                            found.append(child)
    return found


def _episodes(manifest: dict) -> list[tuple]:
    return sorted(
        (e["episode_id"], e["digest"], s["split"]) for s in manifest["shards"] for e in s["episodes"]
    )


def _shards(manifest: dict) -> list[tuple]:
    return sorted((s["path"], s["sha256"]) for s in manifest["shards"])


class Bench:
    def __init__(self, scratch: Path, seed: int) -> None:
        from ray.cluster_utils import Cluster

        self.scratch = scratch
        self.rng = random.Random(seed)
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        self.nodes = [self.cluster.add_node(num_cpus=1) for _ in range(2)]
        self.cluster.wait_for_nodes()
        self.damaged = ""  # what the last damage run did, for its notes
        self.silent: list[str] = []  # damage runs whose resume printed no repair line
        self.reference = self._reference()

    def _reference(self) -> list[tuple]:
        out = self.scratch / "reference"
        self._cli(["rollout", *ARGS, "--workers", "0", "--no-progress", "--out", str(out)], check=True)
        manifest = json.loads((out / "meta" / CONFIG / "manifest.json").read_text())
        self.reference_shards = _shards(manifest)
        return _episodes(manifest)

    # --- processes -----------------------------------------------------------------------------

    def _env(self, faults: str = "") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("JAT_PIPELINE_FAULTS", "RAY_ADDRESS")}
        if faults:
            env["JAT_PIPELINE_FAULTS"] = faults
        return env

    def _cli(self, argv: list[str], check: bool = False, faults: str = "") -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *argv],
            env=self._env(faults),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        if check and done.returncode:
            raise RuntimeError(done.stdout + done.stderr)
        return done

    def _start(self, out: str, faults: str = "", *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "pipeline.cli", "rollout", *ARGS, "--workers", "2"]
        command += ["--address", self.cluster.address, "--shared-fs", "--no-progress", "--out", out, *extra]
        return subprocess.Popen(
            command, env=self._env(faults), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def _actors(self) -> list[psutil.Process]:
        return cluster_actors(self.nodes)

    def _wait(self, process: subprocess.Popen) -> tuple[int | None, str]:
        try:
            output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            return None, output
        return process.returncode, output

    def _wait_for_actors(self, process: subprocess.Popen, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if self._actors():
                return True
            time.sleep(0.05)
        return False

    # --- one run of each kind: returns (struck, exit code, output) -------------------------------

    def actor_random(self, out: str) -> tuple[bool, int | None, str]:
        process = self._start(out)
        struck = False
        if self._wait_for_actors(process):
            time.sleep(self.rng.uniform(0, 3))
            actors = self._actors()
            if actors and process.poll() is None:
                with contextlib.suppress(psutil.Error):
                    self.rng.choice(actors).kill()
                    struck = True
        code, output = self._wait(process)
        return struck, code, output

    def actor_aimed(self, out: str) -> tuple[bool, int | None, str]:
        marker = self.scratch / f"fired-{time.monotonic_ns()}"
        point = self.rng.choice(AIMED_POINTS)
        process = self._start(out, f"{point}={self.rng.randint(1, 6)}@{marker}")
        code, output = self._wait(process)
        return marker.exists(), code, output

    def driver(self, out: str) -> tuple[bool, int | None, str]:
        process = self._start(out)
        struck = False
        if self._wait_for_actors(process):
            time.sleep(self.rng.uniform(0, 3))
            if process.poll() is None:
                actors = self._actors()
                process.kill()
                for actor in actors:
                    with contextlib.suppress(psutil.Error):
                        actor.kill()
                struck = True
        code, output = self._wait(process)
        return struck, code, output

    def driver_point(self, out: str) -> tuple[bool, int | None, str]:
        marker = self.scratch / f"fired-{time.monotonic_ns()}"
        point = self.rng.choice(("storage.commit", "storage.committed"))
        process = self._start(out, f"{point}={self.rng.randint(1, 10)}@{marker}")
        code, output = self._wait(process)
        if marker.exists():  # the driver may have died first, its actors live on: a crashed machine
            for actor in self._actors():
                with contextlib.suppress(psutil.Error):
                    actor.kill()
        return marker.exists(), code, output

    def node(self, out: str) -> tuple[bool, int | None, str]:
        process = self._start(out)
        struck = False
        if self._wait_for_actors(process):
            time.sleep(self.rng.uniform(0, 3))
            if process.poll() is None:
                victim = self.rng.choice(self.nodes)
                self.cluster.remove_node(victim, allow_graceful=False)
                self.nodes.remove(victim)
                struck = True
        code, output = self._wait(process)
        while len(self.nodes) < 2:
            self.nodes.append(self.cluster.add_node(num_cpus=1))
        self.cluster.wait_for_nodes()
        return struck, code, output

    def disk(self, out: str, needed: int) -> tuple[bool, int | None, str]:
        mount = Path(out).parent
        size = max(64 << 10, int(needed * self.rng.uniform(0.05, 1.5)))
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
        process = self._start(out)
        code, output = self._wait(process)
        struck = code == 2 and "disk full" in output
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        return struck, code, output

    def damage(self, out: str) -> tuple[bool, int | None, str]:
        """The serial run's dataset, one committed file damaged at random, then `--resume`."""
        shutil.copytree(self.scratch / "reference", out)
        root = Path(out)
        kinds = {  # a kind of file first, so the one manifest is struck as often as the shards
            "shard": sorted((root / "data" / CONFIG).glob("*.parquet")),
            "record": sorted((root / "meta" / CONFIG / "shards").glob("*.json")),
            "manifest": [root / "meta" / CONFIG / "manifest.json"],
        }
        victim = self.rng.choice(kinds[self.rng.choice(sorted(kinds))])
        how = self.rng.choice(("truncate", "flip", "delete"))
        data = bytearray(victim.read_bytes())
        if how == "delete":
            victim.unlink()
        elif how == "truncate":
            victim.write_bytes(bytes(data[: self.rng.randrange(len(data))]))
        else:
            data[self.rng.randrange(len(data))] ^= self.rng.randrange(1, 256)
            victim.write_bytes(bytes(data))
        self.damaged = f"{how} {victim.relative_to(root)}"
        process = self._start(out, "", "--resume")
        code, output = self._wait(process)
        said = " ".join(output.split())  # log lines wrap
        if "re-recording" not in said and "rebuilt from the unit records" not in said:
            self.silent.append(self.damaged)  # e.g. a flip in the manifest's timestamp: rewritten anyway
        return True, code, output

    def s3(self, out: str, proxy: FlakyProxy) -> tuple[bool, int | None, str]:
        process = self._start(out)
        code, output = self._wait(process)
        struck = proxy.dropped > 0
        proxy.drop = 0.0  # the resume and the checks see a healthy store
        return struck, code, output

    # --- checking -------------------------------------------------------------------------------

    def check(self, out: str, report: KindReport, code: int | None, output: str) -> None:
        from pipeline.checks.validate import validate
        from pipeline.configs.datasets import ValidateConfig
        from pipeline.runtime.storage import open_location

        report.exit_codes[str(code)] = report.exit_codes.get(str(code), 0) + 1
        if report.kind == "damage" and code:  # the repairing --resume itself failed: say why
            report.notes.append(f"{self.damaged}: exit {code}: {output.strip().splitlines()[-1:]}")
        if code is None:
            report.hung += 1
            report.notes.append(f"hung: {output[-300:]}")
            return
        if code != 0:
            resumed = self._cli(["rollout", *ARGS, "--workers", "2", "--address", self.cluster.address,
                                 "--shared-fs", "--no-progress", "--out", out, "--resume"])  # fmt: skip
            report.resumed += 1
            if resumed.returncode != 0:
                report.invalid += 1
                report.notes.append(f"resume exited {resumed.returncode}: {resumed.stdout[-400:]}")
                return
        result = validate(ValidateConfig(out))
        if not result.ok:
            report.invalid += 1
            report.notes.append(f"invalid after exit {code}: {result.errors[:2]}")
        location = open_location(out)
        manifest = location.read_json(f"meta/{CONFIG}/manifest.json")
        episodes = _episodes(manifest)
        ids = Counter(e[0] for e in episodes)
        report.duplicated += sum(n - 1 for n in ids.values())
        report.missing += len({e[0] for e in self.reference} - set(ids))
        if episodes != self.reference:
            report.differing += 1
            report.notes.append(f"differs after exit {code}")
        elif report.kind == "damage" and _shards(manifest) != self.reference_shards:
            report.differing += 1
            report.notes.append(f"{self.damaged}: other shard files than the serial run's")

    def shutdown(self) -> None:
        self.cluster.shutdown()


class FlakyProxy:
    """A TCP proxy to the S3 server that resets a share of connections mid-request."""

    def __init__(self, target_port: int, drop: float, rng: random.Random) -> None:
        self.target_port, self.drop, self.rng = target_port, drop, rng
        self.dropped = 0
        self.loop = asyncio.new_event_loop()
        self.port = _free_port()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        doomed = self.rng.random() < self.drop
        self.dropped += doomed

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, cut: bool) -> None:
            with contextlib.suppress(Exception):
                while block := await src.read(64 << 10):
                    if cut:  # forward part of the first block, then reset both sides
                        dst.write(block[: len(block) // 2])
                        await dst.drain()
                        for w in (writer, up_writer):
                            w.transport.abort()
                        return
                    dst.write(block)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, doomed), pipe(up_reader, writer, False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_s3(scratch: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    for _ in range(200):
        try:
            client.create_bucket(Bucket="chaos")
            break
        except Exception:  # still starting
            time.sleep(0.1)
    return server, port


def _dataset_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50, help="runs per kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-minutes", type=float, default=None, help="stop starting runs after this")
    parser.add_argument("--json", help="write the reports here too")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    scratch = Path(tempfile.mkdtemp(prefix="jat-chaos-"))
    os.environ.setdefault("RAY_TMPDIR", str(scratch / "ray"))
    s3 = proxy = None
    if "s3" in kinds:  # before the cluster: its nodes inherit the credentials and the endpoint
        s3 = _start_s3(scratch)
        proxy = FlakyProxy(s3[1], 0.0, random.Random(args.seed))
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
    bench = Bench(scratch, args.seed)
    needed = _dataset_bytes(scratch / "reference")
    reports = {kind: KindReport(kind) for kind in kinds}
    started = time.monotonic()
    try:
        for index in range(args.runs):
            for kind in kinds:
                if args.budget_minutes and time.monotonic() - started > 60 * args.budget_minutes:
                    raise TimeoutError
                report = reports[kind]
                run_started = time.monotonic()
                out = str(scratch / kind / str(index) / "ds")
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                try:
                    if kind == "disk":
                        struck, code, output = bench.disk(out, needed)
                    elif kind == "s3":
                        proxy.drop, proxy.dropped = bench.rng.uniform(0.02, 0.1), 0
                        out = f"s3://chaos/run-{index}"
                        struck, code, output = bench.s3(out, proxy)
                    else:
                        struck, code, output = getattr(bench, kind.replace("-", "_"))(out)
                    report.runs += 1
                    report.struck += bool(struck)
                    bench.check(out, report, code, output)
                finally:
                    if kind == "disk":
                        subprocess.run(["umount", str(Path(out).parent)], check=False)
                report.seconds += time.monotonic() - run_started
                print(
                    f"{kind:13s} run {index + 1:3d}: exit {code}, struck {bool(struck)}, "
                    f"bad so far {report.bad}" + (f" ({bench.damaged})" if kind == "damage" else ""),
                    flush=True,
                )
    except (TimeoutError, KeyboardInterrupt):
        print("stopped: budget reached", flush=True)
    finally:
        bench.shutdown()
        if s3 is not None:
            s3[0].terminate()
        shutil.rmtree(scratch, ignore_errors=True)
    _print(reports)
    if bench.silent:
        print(f"damage the resume did not report (harmless if the run is not counted bad): {bench.silent}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports.values()], indent=1) + "\n")
    return 1 if any(r.bad for r in reports.values()) else 0


def _print(reports: dict[str, KindReport]) -> None:
    columns = ("kind", "runs", "struck", "exit codes", "resumed", "invalid", "duplicated", "missing")
    header = "| " + " | ".join((*columns, "differing", "hung", "s/run")) + " |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in reports.values():
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.exit_codes.items()))
        print(
            f"| {r.kind} | {r.runs} | {r.struck} | {codes} | {r.resumed} | {r.invalid} | {r.duplicated} "
            f"| {r.missing} | {r.differing} | {r.hung} | {r.seconds / max(r.runs, 1):.1f} |"
        )
        for note in r.notes[:5]:
            print(f"    {r.kind}: {note}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
