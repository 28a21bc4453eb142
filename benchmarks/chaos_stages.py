"""Chaos beyond rollout: train-experts and import-experts killed at random moments, then re-run.

Every run is a real `python -m pipeline.cli` process SIGKILLed at a random moment, then the same
command again (`--resume` for training), and checked against an uninterrupted run of the same
command (the serial reference) and against what was on disk at the kill:

- train-sf:  `train-experts --tasks mujoco-hopper --backend sample-factory --workers 0` (serial
             mode, the tests' tiny budget, a checkpoint every second); the kill comes uniformly
             within the reference's duration counted from the moment the expert's folder appears
             (training, checkpoints, snapshots, evaluation and metadata; not the imports before);
- train-sb3: the same with stable-baselines3's PPO (a checkpoint every 512 steps);
- train-node: `train-experts --address <3-node local cluster> --out s3://…` (moto) with sb3's PPO,
             uploading every second; the node running the training task is removed at a random
             moment and the driver must finish the expert on the survivor (chaos_node.py);
- train-rllib: the same with RLlib's PPO (`--backend rllib`, 2 env runners as Ray actors of the
             driver's local Ray, a checkpoint every 512 steps; benchmarks/chaos_rllib.py); in
             half the runs the kill strikes one env runner process instead of the driver, uniform
             within the reference's env-runner lifetime: the run must end by itself, exit 0 with
             the full budget and no resume, or non-zero with one line, completed by `--resume`;
             after a driver kill every process it started must be gone within 120 s (else hung);
- import:    `import-experts --tasks mujoco-hopper` from the tests' Hub server (tests/hub_server.py,
             in this process) serving a released layout built as tests/experts/expert_helpers.py
             does from a tiny sample-factory training, its files sent at 32 kB/s so that the kill
             lands inside a file; uniform within the reference's duration from its first Hub call.

Counted per kind (one row each): runs, struck (the kill came before the process ended), exit codes
of the killed runs, re-runs, and the bad cells, each with its note:
- invalid:    a checkpoint or snapshot present at the kill or after the re-run that does not load,
              a `.partial` left or taken for a snapshot, metadata.json present after a kill that
              stopped the run before it finished or not telling the truth (steps, status), a re-run
              that exits non-zero, `pipeline evaluate-experts` refusing the result; import: a cached
              file whose sha256 is not the release's;
- duplicated: learning-curve rows whose steps do not increase, rows (or snapshots: the killed run's
              own files) of the training a kill undid that survive the resume; import: a file
              complete at the kill fetched again;
- missing:    curve rows at or below the checkpoint resumed from, written before the kill, gone;
              import: a needed file absent from the metadata;
- differing:  `resumed_from_step` other than the newest checkpoint at the kill (0 with none), final
              steps other than the reference's; import: metadata or model sha256 other than the
              release's;
- hung:       a process past its bound (300 s); train-rllib: a process of a killed run still alive
              120 s after.

    .venv/bin/python benchmarks/chaos_stages.py --runs 30                          # every kind
    .venv/bin/python benchmarks/chaos_stages.py --runs 5 --kinds import --json out.json
    .venv/bin/python benchmarks/chaos_stages.py --runs 30 --kinds train-rllib --seed 3
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "experts")]

from chaos import KindReport, _print  # noqa: E402

KINDS = ("train-sf", "train-sb3", "import", "train-node", "train-rllib")
CONFIG = "mujoco-hopper"
RUN_TIMEOUT_S = 300


def _sets(values: dict) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def train_args(kind: str) -> list[str]:
    from expert_helpers import TINY_SB3_PPO, TINY_SF

    common = ["train-experts", "--tasks", CONFIG, "--workers", "0", "--no-progress", "--eval-episodes", "2"]
    if kind == "train-sf":
        return [
            *common,
            "--backend",
            "sample-factory",
            "--steps",
            "2500",
            *_sets({**TINY_SF, "save_every_sec": 1}),
        ]
    if kind == "train-rllib":
        from chaos_rllib import rllib_args

        return [*common, *rllib_args()]
    return [*common, "--backend", "sb3", "--steps", "3072", *_sets(TINY_SB3_PPO)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JAT_PIPELINE_FAULTS", "RAY_ADDRESS")}
    return {**env, **extra}


def _start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *argv],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait(process: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        return None


def _kill(process: subprocess.Popen) -> bool:
    """SIGKILL the process and anything it started; whether it was still running."""
    alive = process.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return alive


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][-200:] if lines else ""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def identity(path: Path) -> str:
    """The file itself, not only its bytes: a resume that trains again from no checkpoint with the same
    seed may write a snapshot byte for byte the killed run's, and that one is not a survivor."""
    stat = path.stat()
    return f"{sha256(path)}:{stat.st_ino}:{stat.st_mtime_ns}"


def evaluate(out: Path) -> int:
    """`pipeline evaluate-experts` on the store, in this process (its table goes to a log, not here)."""
    from pipeline.cli import main

    with open(out.parent / "evaluate.log", "w") as log, contextlib.redirect_stdout(log):
        return main(["evaluate-experts", str(out), "--tasks", CONFIG, "--episodes", "2"])


# --- train-experts ----------------------------------------------------------------------------------


def _checkpoints(expert: Path, kind: str) -> dict[int, Path]:
    import re

    if kind == "train-rllib":
        from chaos_rllib import rllib_checkpoints

        return rllib_checkpoints(expert)
    if kind == "train-sf":
        found = (expert / "checkpoints" / "sf" / "checkpoint_p0").glob("checkpoint_*.pth")
        pattern = r"checkpoint_\d+_(\d+)\.pth"
    else:
        found = (expert / "checkpoints" / "sb3").glob("model_*_steps.zip")
        pattern = r"model_(\d+)_steps\.zip"
    return {int(m[1]): p for p in found if (m := re.fullmatch(pattern, p.name))}


def _loads(path: Path, kind: str) -> str:
    """'' when the checkpoint or snapshot file loads, else why not."""
    if kind == "train-rllib":
        from chaos_rllib import rllib_loads

        return rllib_loads(path)
    try:
        if path.suffix == ".zip":
            from stable_baselines3 import PPO

            PPO.load(str(path), device="cpu")
        else:
            from experts.checkpoints import load_checkpoint

            load_checkpoint(str(path))
        return ""
    except Exception as exc:
        return f"{path.name}: {type(exc).__name__}: {str(exc)[:120]}"


def _snapshots(expert: Path) -> tuple[list[int], list[str]]:
    history = expert / "history"
    names = sorted(p.name for p in history.iterdir()) if history.is_dir() else []
    return sorted(int(n) for n in names if n.isdigit()), [n for n in names if not n.isdigit()]


def _curve(path: Path) -> list[tuple[float, ...]]:
    from experts.base import read_curve

    return [tuple(row.values()) for row in read_curve(str(path))]


class TrainBench:
    def __init__(self, kind: str, scratch: Path, rng: random.Random) -> None:
        self.kind, self.scratch, self.rng, self.said = kind, scratch, rng, ""
        self.argv = train_args(kind)
        out = scratch / "reference"
        started = time.monotonic()
        process = _start([*self.argv, "--out", str(out)], scratch / "reference.log", _env())
        while process.poll() is None and not (out / CONFIG).exists():
            time.sleep(0.05)
        self.folder_s = time.monotonic() - started
        if _wait(process) != 0:
            raise RuntimeError(f"the reference run failed: {_last_line(scratch / 'reference.log')}")
        self.duration_s = time.monotonic() - started - self.folder_s
        self.reference = json.loads((out / CONFIG / "metadata.json").read_text())
        print(
            f"{kind}: reference {self.reference['steps_trained']} steps, folder after {self.folder_s:.1f} s, "
            f"then {self.duration_s:.1f} s",
            flush=True,
        )

    def launch(self, index: int) -> tuple[Path, Path, Path, subprocess.Popen, float]:
        """Run `index`'s command into its own folder: (out, the expert's folder, its log, the
        process, the deadline of its bound)."""
        out = self.scratch / str(index) / "experts"
        out.parent.mkdir(parents=True)
        log = out.parent / "killed.log"
        process = _start([*self.argv, "--out", str(out)], log, _env())
        return out, out / CONFIG, log, process, time.monotonic() + RUN_TIMEOUT_S

    def run(self, index: int, report: KindReport) -> bool:
        out, expert, _log, process, deadline = self.launch(index)
        self.await_moment(process, expert, deadline)
        struck = self.strike(process)
        report.exit_codes[str(process.returncode)] = report.exit_codes.get(str(process.returncode), 0) + 1
        checkpoints = _checkpoints(expert, self.kind)
        newest = max(checkpoints, default=0)
        self.said = f"newest checkpoint at the kill {newest}" if struck else ""
        killed_curve = _curve(expert / "checkpoints" / "learning_curve.csv")
        killed_snapshots = {path: identity(path) for path in self._snapshot_files(expert)}
        finished = (expert / "metadata.json").exists()
        for path in [*checkpoints.values(), *self._snapshot_files(expert)]:
            self._bad(report, "invalid", _loads(path, self.kind), "at the kill")
        if finished and struck:  # killed after the metadata: it must tell the finished run's truth
            meta = json.loads((expert / "metadata.json").read_text())
            if meta["steps_trained"] != newest:
                self._bad(
                    report, "invalid", f"metadata says {meta['steps_trained']} steps, newest is {newest}"
                )
        if struck and not self.resume(index, report, out):
            return struck
        if not struck:  # the run ended before the kill: nothing was undone
            newest, killed_curve, killed_snapshots = 0, [], {}
        self.check(index, report, out, newest, killed_curve, killed_snapshots)
        return struck

    def resume(self, index: int, report: KindReport, out: Path) -> bool:
        """The same command with `--resume`, counted (hung, or invalid when it exits non-zero);
        whether it exited 0, so that its result is to be checked."""
        report.resumed += 1
        log = out.parent / "resumed.log"
        code = _wait(_start([*self.argv, "--out", str(out), "--resume"], log, _env()))
        if code is None:
            report.hung += 1
            report.notes.append(f"run {index}: resume hung")
        elif code != 0:
            self._bad(report, "invalid", f"run {index}: resume exited {code}: {_last_line(log)}")
        return code == 0

    def await_moment(self, process: subprocess.Popen, expert: Path, deadline: float) -> None:
        """Until the kill: uniform over the reference's run from the moment the expert's folder appears."""
        while process.poll() is None and not expert.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(self.rng.uniform(0, self.duration_s))

    def strike(self, process: subprocess.Popen) -> bool:
        """The kill (of the driver and its process group); whether it came before the process ended."""
        return _kill(process)

    def _snapshot_files(self, expert: Path) -> list[Path]:
        name = {"train-sf": "model.pth", "train-rllib": "module/module_state.pkl"}.get(self.kind, "model.zip")
        return [expert / "history" / f"{step:012d}" / name for step in _snapshots(expert)[0]]

    @staticmethod
    def _bad(report: KindReport, cell: str, why: str, where: str = "", count: int = 1) -> None:
        if why and count:
            setattr(report, cell, getattr(report, cell) + count)
            report.notes.append(f"{cell}{' ' + where if where else ''}: {why}")

    def check(
        self,
        index: int,
        report: KindReport,
        out: Path,
        resumed_from: int,
        killed_curve: list,
        killed_snapshots: dict[Path, str],
    ) -> None:

        expert = out / CONFIG
        meta = json.loads((expert / "metadata.json").read_text())
        checkpoints = _checkpoints(expert, self.kind)
        for path in [*checkpoints.values(), *self._snapshot_files(expert)]:
            self._bad(report, "invalid", _loads(path, self.kind), f"run {index}")
        if meta["resumed_from_step"] != resumed_from:
            self._bad(
                report,
                "differing",
                f"run {index}: resumed from {meta['resumed_from_step']}, "
                f"the newest checkpoint at the kill was {resumed_from}",
            )
        if meta["steps_trained"] != self.reference["steps_trained"] or meta["steps_trained"] != max(
            checkpoints
        ):
            self._bad(
                report,
                "differing",
                f"run {index}: {meta['steps_trained']} steps, the reference "
                f"{self.reference['steps_trained']}, the newest checkpoint {max(checkpoints)}",
            )
        if meta["status"] not in ("accepted", "rejected") or not meta.get("evaluation"):
            self._bad(report, "invalid", f"run {index}: status {meta['status']} without an evaluation")
        curve = _curve(expert / "learning_curve.csv")
        if curve != _curve(expert / "checkpoints" / "learning_curve.csv"):
            self._bad(report, "invalid", f"run {index}: the store's curve is not the training's")
        steps = [row[0] for row in curve]
        self._bad(
            report,
            "duplicated",
            f"run {index}: curve steps {steps}",
            count=sum(b <= a for a, b in itertools.pairwise(steps)),
        )
        undone = [row for row in killed_curve if row[0] > resumed_from and row in curve]
        self._bad(
            report, "duplicated", f"run {index}: rows of undone training kept {undone}", count=len(undone)
        )
        lost = [row for row in killed_curve if row[0] <= resumed_from and row not in curve]
        self._bad(report, "missing", f"run {index}: curve rows lost {lost}", count=len(lost))
        snapshots, others = _snapshots(expert)
        stale = [  # the killed run's own file (a resumed run writes its own under the same step)
            int(path.relative_to(expert / "history").parts[0])
            for path, digest in killed_snapshots.items()
            if int(path.relative_to(expert / "history").parts[0]) > resumed_from
            and path.exists()
            and identity(path) == digest
        ]
        self._bad(
            report, "duplicated", f"run {index}: snapshots of undone training {stale}", count=len(stale)
        )
        self._bad(report, "invalid", f"run {index}: history holds {others}" if others else "")
        if meta["history_snapshots"] != len(snapshots):
            self._bad(
                report,
                "invalid",
                f"run {index}: {meta['history_snapshots']} snapshots said, {len(snapshots)} kept",
            )
        code = self.evaluate_store(out)
        self._bad(report, "invalid", f"run {index}: evaluate-experts exited {code}" if code else "")

    def evaluate_store(self, out: Path) -> int:
        return evaluate(out)


def import_bench(scratch: Path, rng: random.Random):
    from chaos_import import ImportBench

    return ImportBench(scratch, rng)


def node_bench(scratch: Path, rng: random.Random):
    from chaos_node import NodeBench

    return NodeBench(scratch, rng)


def rllib_bench(scratch: Path, rng: random.Random, driver_in_training: bool = False):
    from chaos_rllib import RLlibBench

    return RLlibBench("train-rllib", scratch, rng, driver_in_training)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30, help="runs per kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the reports here too")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    parser.add_argument(
        "--rllib-driver-in-training",
        action="store_true",
        help="train-rllib: every run kills the driver, uniform over the reference's env-runner lifetime "
        "from the first runner (training, between checkpoints), instead of the mixed default",
    )
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if sorted(set(kinds) - set(KINDS)):
        parser.error(f"unknown kinds {sorted(set(kinds) - set(KINDS))}; choose from {', '.join(KINDS)}")
    scratch = Path(tempfile.mkdtemp(prefix="jat-chaos-stages-"))
    os.environ.setdefault("HF_HOME", str(scratch / "hf-home"))  # in-process evaluations, never a login cache
    print(f"scratch: {scratch}", flush=True)
    rng = random.Random(args.seed)
    reports = {kind: KindReport(kind) for kind in kinds}
    benches = {}
    try:
        for kind in kinds:
            (scratch / kind).mkdir()
            benches[kind] = (
                import_bench(scratch / kind, rng)
                if kind == "import"
                else node_bench(scratch / kind, rng)
                if kind == "train-node"
                else rllib_bench(scratch / kind, rng, args.rllib_driver_in_training)
                if kind == "train-rllib"
                else TrainBench(kind, scratch / kind, rng)
            )
        for index in range(args.runs):
            for kind in kinds:
                report, started = reports[kind], time.monotonic()
                noted = len(report.notes)
                struck = benches[kind].run(index, report)
                report.runs += 1
                report.struck += bool(struck)
                report.seconds += time.monotonic() - started
                said = benches[kind].said
                print(
                    f"{kind:9s} run {index + 1:3d}: struck {struck}, bad so far {report.bad} {said}",
                    flush=True,
                )
                for note in report.notes[noted:]:
                    print(f"    {note}", flush=True)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        if "import" in benches:
            benches["import"].server.stop()
        if "train-node" in benches:
            benches["train-node"].close()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    _print(reports)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports.values()], indent=1) + "\n")
    return 1 if any(r.bad for r in reports.values()) else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
