"""Chaos for the release stages and the model: SIGKILL at a random moment, then the same command again.

Every run is a real `python -m pipeline.cli` subprocess killed once at a random moment, then run again
with the same command (train-model: with `--resume`). Publish kinds talk to the tests' Hub-API server
(tests/hub_server.py) in this process, on a fresh copy of its storage per run, which waits 0.05 s
before each LFS upload and 0.2 s before each commit so that kills land mid-upload; the moment is uniform
over the reference run's upload phase (first repo_info to last commit or tag); train-model's over its run.
train-model-ddp is train-model with `--num-workers 2` on the Ray the command starts itself; each run
kills, at random, its driver's process group (uniform over the reference's run) or one Ray Train
worker (uniform over the reference's time with workers), and checks what the Ray Train storage holds
after the kill, the killed run's last line, and that no process of the run outlives it (chaos_ddp.py).
Kinds, inputs and checks (invalid, duplicated, missing, differing, hung, leaked): benchmarks/README.md.

    .venv/bin/python benchmarks/chaos_release.py --runs 30 --work /tmp/chaos-release --json out.json
    .venv/bin/python benchmarks/chaos_release.py --runs 30 --kinds train-model-ddp --budget-minutes 60
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from pathlib import Path

import psutil
from chaos import KindReport
from chaos_ddp import REAP_GRACE_S, reap, storage_problems, train_workers
from huggingface_hub import HfApi

from pipeline.model.checkpoints import CHECKPOINT, read_checkpoint
from pipeline.model.reporting import read_csv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Hub-API test server
KINDS = ("publish", "publish-experts", "publish-model", "train-model", "train-model-ddp")
TRAIN_KINDS = {"train-model": 0, "train-model-ddp": 2}  # -> --num-workers (0: one process)
NEEDS = {"publish": ("ds", "hub"), "publish-experts": ("experts",), "publish-model": ("ds", "model")}
RUN_TIMEOUT_S = 300
TOLERANCE = 1e-4  # tests/model/test_distributed.py
REPO = "jat-org/chaos"
BASE_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith(("HF_", "JAT_PIPELINE_FAULTS", "RAY_ADDRESS"))
}
LOSSES, TEST_LOSSES = "losses.csv", "test_losses.csv"
TRAIN = "--configs babyai-go-to,mujoco-hopper --size tiny --batch-size 2 --context 8 --eval-batches 1"
PPO = "--set algo=ppo --set n_steps=256 --set batch_size=64 --set n_epochs=2 --set checkpoint_every=512"
PREPARE = {
    "ds": [
        "rollout --tasks babyai-go-to --episodes 16 --episodes-per-shard 1 --workers 0 --seed 5 --out {ds}",
        "rollout --tasks mujoco-hopper --policy random --episodes 4 --workers 0 --seed 5 --resume --out {ds}",
    ],
    "experts": [
        f"train-experts --tasks mujoco-pendulum --backend sb3 --steps 2048 {PPO} --eval-episodes 2 "
        "--workers 0 --out {experts}",
        "train-experts --tasks babyai-go-to --no-eval --workers 0 --out {experts}",
        # draws each replay once and keeps it in the store: the runs time uploads, not rendering
        "publish-experts {experts} --repo-prefix {repo} --allow-weak --to-folder {folder}",
    ],
    "hub": ["publish {ds} --repo-id {repo} --configs mujoco-hopper --no-clips --no-xet --no-progress"],
}
PREPARED = {"ds": "meta/mujoco-hopper/manifest.json", "experts": "babyai-go-to/replay.gif"}
COMMANDS = {
    "publish": "-v publish {ds} --repo-id {repo} --configs babyai-go-to --no-xet --no-progress --no-clips "
    "--max-commit-files 3",
    "publish-experts": "-v publish-experts {source} --repo-prefix {repo} --with-history "
    "--allow-weak --no-xet",
    "publish-model": "-v publish-model {model} --repo-id {repo}-model --no-xet",
}
REPOS = {
    "publish": [(REPO, "dataset")],
    "publish-experts": [(f"{REPO}-babyai-go-to", "model"), (f"{REPO}-mujoco-pendulum", "model")],
    "publish-model": [(f"{REPO}-model", "model")],
}


@dataclass
class TrainReference:
    losses: dict[str, list[dict[str, str]]]
    seconds: float
    """Its wall time, start-up included (then that of any run that ended before its kill: load changes)."""
    workers_at: float
    """Seconds from its start to its first Ray Train worker (0: one process)."""
    checkpoints_at: tuple[float, float] = (0.0, 0.0)
    """Seconds from its start to its first and to its last checkpoint in Ray Train's storage."""


@dataclass
class ReleaseReport(KindReport):
    leaked: int = 0

    @property
    def bad(self) -> int:
        return super().bad + self.leaked


def _start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """The CLI in a session of its own: its pid is its process group's and every child's sid."""
    env = {**(env or BASE_ENV), "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}  # our tree, no display
    command = [sys.executable, "-m", "pipeline.cli", *argv]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _wait(process: subprocess.Popen) -> tuple[int | None, str]:
    """Exit code (None: hung past RUN_TIMEOUT_S, then its group killed) and output."""
    try:
        output = process.communicate(timeout=RUN_TIMEOUT_S)[0]
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return None, process.communicate()[0]
    return process.returncode, output


def _cli(argv: list[str], env: dict[str, str] | None = None, check: bool = False) -> tuple[int | None, str]:
    code, output = _wait(process := _start(argv, env))
    reap(process.pid)  # a run's own Ray, if it started one
    if check and code != 0:
        raise RuntimeError(f"{argv[:2]} exited {code}: {output[-2000:]}")
    return code, output


class Hub:
    """The tests' Hub server on a copy of `base` (None: empty), uploads slowed, its first repo_info timed."""

    def __init__(self, base: Path | None, root: Path) -> None:
        from hub_server import HubServer

        if base is not None:
            shutil.copytree(base, root)
        self.root, self.server = root, HubServer(root).start()
        self.server.slow("lfs-upload", 0.05)
        self.server.slow("commit", 0.2)
        self.started, self.started_at, self.last_at = threading.Event(), 0.0, 0.0
        self.server.on("info", lambda n: self._start())
        for route in ("commit", "tag"):  # the last write of a publish
            self.server.on(route, lambda n: setattr(self, "last_at", time.monotonic()))

    def _start(self) -> None:
        self.started_at = self.started_at or time.monotonic()
        self.started.set()

    def env(self, home: Path) -> dict[str, str]:
        hf = {"HF_ENDPOINT": self.server.url, "HF_TOKEN": self.server.token, "HF_HUB_DISABLE_XET": "1"}
        return BASE_ENV | hf | {"HF_HOME": str(home)}

    def api(self) -> HfApi:
        return HfApi(endpoint=self.server.url, token=self.server.token)

    def tree(self, repo: str, kind: str) -> dict[str, str]:
        """path -> LFS sha256 or git blob id, read through the Hub API; {} when there is no repo."""
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            entries = self.api().list_repo_tree(repo, recursive=True, repo_type=kind)
            return {e.path: (e.lfs.sha256 if e.lfs else e.blob_id) for e in entries if hasattr(e, "blob_id")}
        except RepositoryNotFoundError:
            return {}

    def text(self, repo: str, kind: str, path: str, cache: Path) -> str:
        return Path(self.api().hf_hub_download(repo, path, repo_type=kind, cache_dir=str(cache))).read_text()

    def state(self, repos: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
        """Every repo's tree; a dataset's also names its tags and whether they are on the head."""
        state = {repo: self.tree(repo, kind) for repo, kind in repos}
        for repo, kind in repos:
            if kind == "dataset" and state[repo]:
                tags = self.api().list_repo_refs(repo, repo_type=kind).tags
                head = self.server.head(repo)
                state[repo]["@tags"] = ",".join(f"{t.name}={t.target_commit == head}" for t in tags)
        return state

    def commits(self, repos: list[tuple[str, str]], skip: dict[str, int]) -> dict[str, list[dict]]:
        """Per repo, its commits but the `skip[repo]` oldest (newest first)."""
        history = {r: self.server.history(r, kind=k) if self.server.head(r, kind=k) else [] for r, k in repos}
        return {r: h[: len(h) - skip.get(r, 0)] for r, h in history.items()}


def reader_problems(hub: Hub, kind: str, reference: dict, cache: Path) -> list[str]:
    """What a reader of main would see wrong right now: a listed config or a card without its files."""
    from pipeline.release.card import card_configs

    problems = []
    for repo, repo_type in REPOS[kind]:
        tree = hub.tree(repo, repo_type)
        if "README.md" not in tree:
            continue
        if repo_type == "model":  # a model card comes in the commit of its files: all or nothing
            absent = sorted(set(reference[repo]) - set(tree) - {"@tags"})
            problems += [f"{repo}: card without {absent[:3]}"] if absent else []
            continue
        for entry in card_configs(hub.text(repo, repo_type, "README.md", cache)):
            name, manifest = entry["config_name"], f"meta/{entry['config_name']}/manifest.json"
            for split in entry["data_files"]:
                if not any(fnmatch(p, split["path"]) for p in tree):
                    problems.append(f"{repo}: card lists {name} {split['split']}, no file matches")
            if manifest not in tree:
                problems.append(f"{repo}: card lists {name}, no {manifest}")
                continue
            for shard in json.loads(hub.text(repo, repo_type, manifest, cache))["shards"]:
                if tree.get(shard["path"]) != shard["sha256"]:
                    problems.append(f"{repo}: card lists {name}, {shard['path']} missing or other")
    return problems


def leaks(token: str, outputs: list[str], folder: Path) -> list[str]:
    found = [f"output {i}" for i, o in enumerate(outputs) if token in o or token in "".join(o.split())]
    files = (p for p in folder.rglob("*") if p.is_file())
    return found + [str(p) for p in files if token.encode() in p.read_bytes()]


def kill_after(
    process: subprocess.Popen, start: threading.Event | None, delay: float, group: bool = False
) -> bool:
    """SIGKILL `process` (`group`: its process group) `delay` s after `start` is set (None: now);
    whether it was still running."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while start is not None and not start.is_set() and process.poll() is None and time.monotonic() < deadline:
        start.wait(0.02)
    end = time.monotonic() + delay
    while process.poll() is None and time.monotonic() < end:
        time.sleep(0.01)
    if running := process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL) if group else process.send_signal(signal.SIGKILL)
    return running


def _ray_checkpoints(out: Path) -> list[Path]:
    """The checkpoint folders Ray Train has registered in a run's storage so far."""
    return sorted(p for p in (out / "ray-checkpoints").glob("checkpoint_*") if p.is_dir())


class Bench:
    def __init__(
        self, work: Path, scratch: Path, kinds: list[str], seed: int, worker_in_training: bool = False
    ) -> None:
        self.work, self.scratch, self.rng = work, scratch, random.Random(seed)
        self.worker_in_training = worker_in_training
        self.names = {"ds": work / "ds", "experts": work / "experts", "model": work / "model", "repo": REPO}
        self.names["folder"] = work / "experts-folder"
        self._prepare({part for kind in kinds for part in NEEDS.get(kind, ("ds",))})
        self.references = {k: self._reference(k) for k in kinds if k in COMMANDS}
        self.train = {k: self._train_reference(k) for k in kinds if k in TRAIN_KINDS}

    def _prepare(self, parts: set[str]) -> None:
        """Inputs the kinds need, made once per --work folder."""
        names, base = self.names, self.work / "hub-base"
        for part, done in PREPARED.items():
            if part in parts | {"ds"} and not (names[part] / done).exists():
                shutil.rmtree(names[part], ignore_errors=True)
                for step in PREPARE[part]:
                    _cli(step.format(**names).split(), check=True)
        if "model" in parts and not (names["model"] / "model.safetensors").exists():
            _cli([*self._train_argv(names["model"]), "--overwrite"], check=True)
        if "hub" in parts and not base.exists():  # the repo already holds mujoco-hopper: its card lists it
            hub = Hub(None, base)
            _cli(PREPARE["hub"][0].format(**names).split(), hub.env(self.work / "hf"), check=True)
            hub.server.stop()

    def _train_argv(self, out: Path, kind: str = "train-model") -> list[str]:
        options = f"{TRAIN} --steps 8 --checkpoint-every 2 --threads 1 --no-progress"
        if TRAIN_KINDS[kind]:
            options += f" --num-workers {TRAIN_KINDS[kind]}"
        return ["train-model", "--data", str(self.names["ds"]), *options.split(), "--out", str(out)]

    def _train_reference(self, kind: str) -> TrainReference:
        """The uninterrupted run: its losses, wall time and (data-parallel) when its workers appeared."""
        out, started, workers_at = self.scratch / kind / "reference", time.monotonic(), 0.0
        process, seen = _start(self._train_argv(out, kind)), {}  # checkpoint name -> when first seen
        while TRAIN_KINDS[kind] and process.poll() is None:
            workers_at = workers_at or (time.monotonic() - started) * bool(train_workers(process.pid))
            for folder in _ray_checkpoints(out):  # Ray Train keeps the newest few: names, not a count
                seen.setdefault(folder.name, time.monotonic() - started)
            time.sleep(0.1)
        code, output = _wait(process)
        reap(process.pid)
        if code != 0:
            raise RuntimeError(f"{kind} reference exited {code}: {output[-2000:]}")
        losses = {file: read_csv(out / file) for file in (LOSSES, TEST_LOSSES)}
        span = (min(seen.values()), max(seen.values())) if seen else (0.0, 0.0)
        print(f"{kind}: reference's checkpoints at {span[0]:.1f}-{span[1]:.1f} s ({len(seen)})", flush=True)
        return TrainReference(losses, time.monotonic() - started, workers_at, span)

    def _run_folder(self, kind: str, index: int | str) -> tuple[Path, Hub, list[str]]:
        folder = self.scratch / kind / str(index)
        folder.mkdir(parents=True)
        hub = Hub(self.work / "hub-base" if kind == "publish" else None, folder / "hub")
        source = folder / "source"  # publish-experts writes into the store (replays, .tmp/): a copy each
        if kind == "publish-experts":
            shutil.copytree(self.names["experts"], source, ignore=shutil.ignore_patterns("checkpoints"))
        return folder, hub, COMMANDS[kind].format(**self.names, source=source).split()

    def _reference(self, kind: str) -> dict:
        folder, hub, argv = self._run_folder(kind, "reference")
        code, output = _cli(argv, hub.env(folder / "hf"))
        assert code == 0 and hub.started.is_set(), output[-2000:]
        state = hub.state(REPOS[kind])
        hub.server.stop()
        return {"state": state, "phase": max(hub.last_at - hub.started_at, 0.5)}

    def publish_run(self, kind: str, index: int, report: ReleaseReport) -> tuple[bool, int | None]:
        reference, repos = self.references[kind], REPOS[kind]
        folder, hub, argv = self._run_folder(kind, index)
        env = hub.env(folder / "hf")
        process = _start(argv, env)
        struck = kill_after(process, hub.started, self.rng.uniform(0, reference["phase"]))
        code, first = _wait(process)
        time.sleep(0.5)  # requests the client sent before it died are handled (the slowest waits 0.2 s)
        problems = reader_problems(hub, kind, reference["state"], folder / "reader")
        killed, objects = hub.state(repos), {p.name for p in (hub.root / "objects").glob("*")}
        before = {repo: len(commits) for repo, commits in hub.commits(repos, {}).items()}
        uploads = hub.server.counts["lfs-upload"]
        code2, second = _cli(argv, env)
        report.resumed += 1
        report.hung += code2 is None
        problems += [f"re-run exited {code2}: {second[-300:]}"] if code2 != 0 else []
        problems += reader_problems(hub, kind, reference["state"], folder / "reader")
        final = hub.state(repos)
        sent = hub.server.counts["lfs-upload"] - uploads
        new = [c for commits in hub.commits(repos, before).values() for c in commits]
        paths = sum(not p.startswith(".git") for c in new for p in c["changed"] + c["deleted"])
        needed_uploads = needed_paths = 0
        for repo, files in final.items():
            # per LFS path, as the client sends them (two paths with one content: two uploads)
            needed_uploads += sum(len(oid) == 64 and oid not in objects for oid in files.values())
            changed = set(files) | set(killed[repo])
            needed_paths += sum(files.get(p) != killed[repo].get(p) for p in changed if p[0] not in ".@")
        if sent > needed_uploads or paths > needed_paths:
            report.duplicated += max(0, sent - needed_uploads) + max(0, paths - needed_paths)
            note = f"run {index}: sent {sent}/{needed_uploads} objects, {paths}/{needed_paths} paths"
            report.notes.append(note)
        report.missing += sum(len(set(files) - set(final[r])) for r, files in reference["state"].items())
        if final != reference["state"]:
            report.differing += 1
            report.notes.append(f"run {index}: final tree differs")
        if problems:
            report.invalid += 1
            report.notes.append(f"run {index}: {problems[:2]}")
        found = leaks(hub.server.token, [first, second], folder)
        if found:
            report.leaked += 1
            report.notes.append(f"run {index}: token in {found[:3]}")
        hub.server.stop()
        return struck, code

    def train_run(self, kind: str, index: int, report: ReleaseReport) -> tuple[bool, str]:
        """Kill a run (train-model: its process; -ddp: at random its driver's process group, or one Ray
        Train worker), check what it left, `--resume` it and check the result; (struck, exit label)."""
        reference, out = self.train[kind], self.scratch / kind / str(index)
        argv, problems, began = self._train_argv(out, kind), [], time.monotonic()
        target = self.rng.choice(("driver", "worker")) if TRAIN_KINDS[kind] else ""
        target = "worker" if TRAIN_KINDS[kind] and self.worker_in_training else target
        process = _start(argv)
        if target == "worker":
            struck = self._kill_worker(process, reference, out)
        else:
            delay = self.rng.uniform(0, reference.seconds)
            struck = kill_after(process, None, delay, group=target == "driver")
        code, output = _wait(process)
        reference.seconds = reference.seconds if struck else time.monotonic() - began  # load changed
        left, gone_s = reap(process.pid)
        last = (output.strip().splitlines() or [""])[-1]
        if target == "worker" and struck and code != 0:  # no retry configured: one line naming --resume
            if code != 2 or not last.startswith("error: ") or "--resume" not in last:
                problems.append(f"killed worker: exit {code}, last line {last[:200]!r}")
            report.notes.append(f"run {index}: worker killed, exit {code}: {last[:300]}")
        problems += self._checkpoint_problems(out, "after the kill")
        code2, output = _wait(resumed := _start([*argv, "--resume"]))
        left_after, gone_after_s = reap(resumed.pid)
        left += left_after
        report.resumed += 1
        report.hung += code2 is None
        if left:
            report.leaked += 1
            report.notes.append(f"run {index}: alive {REAP_GRACE_S:g} s after the driver: {left[:3]}")
        elif max(gone_s, gone_after_s) > 1:
            report.notes.append(
                f"run {index}: the run's last process went {gone_s:.1f} s after the killed driver, "
                f"{gone_after_s:.1f} s after the resumed one"
            )
        if code2 != 0:
            problems.append(f"--resume exited {code2}: {output.strip().splitlines()[-1:]}")
        else:
            problems += self._checkpoint_problems(out, "after --resume")
            self._check_losses(out, reference, index, report)
            try:
                from pipeline.model.evaluate import load_model

                load_model(out)
            except Exception as exc:
                problems.append(f"final model does not load: {exc}")
        if problems:
            report.invalid += 1
            report.notes.append(f"run {index}: {problems[:2]}")
        return struck, f"{target} {code}".strip()

    def _kill_worker(self, process: subprocess.Popen, reference: TrainReference, out: Path) -> bool:
        """SIGKILL one Ray Train worker at a moment uniform over the reference's time with workers;
        `--ddp-worker-in-training`: uniform between its first and last checkpoint, counted from the
        run's own first checkpoint (mid-training, where the default window rarely lands)."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        if self.worker_in_training:
            while process.poll() is None and not _ray_checkpoints(out) and time.monotonic() < deadline:
                time.sleep(0.05)
            first, last = reference.checkpoints_at
            end = time.monotonic() + self.rng.uniform(0, max(last - first, 0.1))
        else:
            while process.poll() is None and not train_workers(process.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            end = time.monotonic() + self.rng.uniform(0, max(reference.seconds - reference.workers_at, 1.0))
        while process.poll() is None and time.monotonic() < end:
            time.sleep(0.01)
        workers = train_workers(process.pid) if process.poll() is None else []
        if workers:
            with contextlib.suppress(psutil.Error):
                self.rng.choice(workers).kill()
                return True
        return False

    @staticmethod
    def _checkpoint_problems(out: Path, when: str) -> list[str]:
        """A checkpoint in OUT or in Ray Train's storage (`OUT/ray-checkpoints`) that does not load."""
        problems = [f"{when}: {p}" for p in storage_problems(out / "ray-checkpoints")]
        try:
            if (out / CHECKPOINT).exists():
                read_checkpoint(out / CHECKPOINT)
        except Exception as exc:
            problems.append(f"{when}: {CHECKPOINT}/ does not load: {exc}")
        return problems

    @staticmethod
    def _check_losses(out: Path, reference: TrainReference, index: int, report: ReleaseReport) -> None:
        for file, expected in reference.losses.items():
            rows = read_csv(out / file)
            keys = [(r["step"], r["config"]) for r in rows]
            report.duplicated += len(keys) - len(set(keys))
            report.missing += len({(r["step"], r["config"]) for r in expected} - set(keys))
            if len(rows) != len(expected) or any(
                (a["step"], a["config"]) != (b["step"], b["config"])
                or abs(float(a["loss"]) - float(b["loss"])) > TOLERANCE * abs(float(b["loss"]))
                for a, b in zip(rows, expected, strict=False)
            ):
                report.differing += 1
                report.notes.append(f"run {index}: {file} differs")


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--runs", type=int, default=30, help="runs per kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/jat-chaos-release", help="inputs are made once, kept here")
    parser.add_argument("--budget-minutes", type=float, default=None, help="stop starting runs after this")
    parser.add_argument("--json", help="write the reports here too")
    parser.add_argument(
        "--ddp-worker-in-training",
        action="store_true",
        help="train-model-ddp: every run kills one worker between its first and last checkpoint "
        "(mid-training) instead of the mixed default",
    )
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(set(kinds) - set(KINDS))}; choose from {', '.join(KINDS)}")
    (work := Path(args.work)).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs = work / f"runs-{time.strftime('%H%M%S')}"
    bench = Bench(work, runs, kinds, args.seed, args.ddp_worker_in_training)
    print(f"inputs and references ready in {time.monotonic() - started:.0f} s", flush=True)
    reports = {kind: ReleaseReport(kind) for kind in kinds}
    try:
        for index in range(args.runs):
            for kind in kinds:
                if args.budget_minutes and time.monotonic() - started > 60 * args.budget_minutes:
                    raise TimeoutError
                report, began, noted = reports[kind], time.monotonic(), len(reports[kind].notes)
                if kind in TRAIN_KINDS:
                    struck, code = bench.train_run(kind, index, report)
                else:
                    struck, code = bench.publish_run(kind, index, report)
                report.runs += 1
                report.struck += struck
                report.exit_codes[str(code)] = report.exit_codes.get(str(code), 0) + 1
                report.seconds += time.monotonic() - began
                line = f"{kind:15s} run {index + 1:3d}: exit {code}, struck {struck}, bad so far {report.bad}"
                print("\n    ".join([line, *report.notes[noted:]]), flush=True)
    except (TimeoutError, KeyboardInterrupt):
        print("stopped: budget reached", flush=True)
    _print(reports)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports.values()], indent=1) + "\n")
    return 1 if any(r.bad for r in reports.values()) else 0


def _print(reports: dict[str, ReleaseReport]) -> None:
    columns = "kind runs struck exit-codes resumed invalid duplicated missing differing hung leaked s/run"
    print("| " + " | ".join(columns.split()) + " |\n" + "|---" * 12 + "|")
    for r in reports.values():
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.exit_codes.items()))
        cells = (r.kind, r.runs, r.struck, codes, r.resumed, r.invalid, r.duplicated, r.missing, r.differing)
        cells += (r.hung, r.leaked, f"{r.seconds / max(r.runs, 1):.1f}")
        print("| " + " | ".join(str(c) for c in cells) + " |")
        for note in r.notes[:8]:
            print(f"    {r.kind}: {note}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
