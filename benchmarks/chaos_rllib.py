"""The `train-rllib` kind of `chaos_stages.py`: RLlib's PPO killed in the driver or in an env runner.

`train-experts --tasks mujoco-hopper --backend rllib --workers 0` with the tests' tiny settings
(`expert_helpers.TINY_RLLIB`: 2 env runners, 256-step batches) and a checkpoint every
`CHECKPOINT_EVERY` steps. In-process, the driver starts its own local Ray; RLlib's env runners
are Ray actors in worker processes of that Ray (titled `ray::SingleAgentEnvRunner...`, each in
its own process group, so a SIGKILL of the driver's group leaves them to notice their raylet's
death). The learner trains in the driver (`num_learners: 0`).

Each run is, at random (half each):
- driver: TrainBench's run (SIGKILL of the driver's process group at a random moment, then the
  same command with `--resume`, every check of chaos_stages.py); in addition every process the
  driver had started must be gone within `GONE_S` of the kill (one left running is hung);
- actor:  SIGKILL of one env runner process, uniform within the reference's env-runner lifetime
  counted from the moment the first runner appears. RLlib restarts env runners by default
  (`restart_failed_env_runners`): the run must end on its own, bounded; exit 0 must mean the full
  budget trained with no resume (`resumed_from_step` 0, the reference's steps); a non-zero exit
  must say why in one line (`<task> failed: ...`) and `--resume` must complete it, checked as a
  driver kill is (against the newest checkpoint at the exit).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import threading
import time
from pathlib import Path

import psutil
from chaos import KindReport
from chaos_stages import (
    CONFIG,
    TrainBench,
    _checkpoints,
    _curve,
    _kill,
    _sets,
    _wait,
    identity,
)

STEPS = 4096
CHECKPOINT_EVERY = 512
RUNNER = "ray::SingleAgentEnvRunner"
GONE_S = 120.0  # a Ray worker the raylet had just started, still importing under load, outlives the kill


def rllib_args() -> list[str]:
    from expert_helpers import TINY_RLLIB

    settings = {**TINY_RLLIB, "checkpoint_every": CHECKPOINT_EVERY}
    return ["--backend", "rllib", "--steps", str(STEPS), *_sets(settings)]


def rllib_checkpoints(expert: Path) -> dict[int, Path]:
    """Finished checkpoints by step, as experts.rllib names them (a `.partial` is not one)."""
    found = (expert / "checkpoints" / "rllib").glob("checkpoint_*")
    return {int(m[1]): p for p in found if (m := re.fullmatch(r"checkpoint_(\d+)", p.name))}


def rllib_loads(path: Path) -> str:
    """'' when a checkpoint folder (every pickle and JSON file RLlib's restore reads, and its
    RLModule) or a history snapshot (`module/module_state.pkl`: the policy folder) loads, else why not."""
    from experts.rllib_policy import RLlibPolicy
    from pipeline.tasks.registry import get_task

    try:
        if not path.is_dir():
            RLlibPolicy(str(path.parent.parent), get_task(CONFIG))
            return ""
        files = sorted(p for p in path.rglob("*") if p.is_file())
        missing = sorted(set(REQUIRED) - {str(p.relative_to(path)) for p in files})
        if missing:
            return f"{path.name}: missing {missing}"
        for file in files:
            if file.suffix == ".pkl":
                with file.open("rb") as f:
                    pickle.load(f)
            elif file.suffix == ".json":
                json.loads(file.read_text())
        from ray.rllib.core.rl_module.rl_module import RLModule

        RLModule.from_checkpoint(str(path / "learner_group" / "learner" / "rl_module" / "default_policy"))
        return ""
    except Exception as exc:
        return f"{path.parent.name}/{path.name}: {type(exc).__name__}: {str(exc)[:120]}"


# What a whole checkpoint holds (Algorithm.save_to_path; the tiny PPO's reference run lists these).
REQUIRED = (
    "rllib_checkpoint.json",
    "algorithm_state.pkl",
    "class_and_ctor_args.pkl",
    "env_runner/state.pkl",
    "learner_group/state.pkl",
    "learner_group/learner/state.pkl",
    "learner_group/learner/rl_module/default_policy/module_state.pkl",
)


def _runners(pid: int) -> list[psutil.Process]:
    """The env runner processes among the descendants of the driver `pid`."""
    with contextlib.suppress(psutil.Error):
        found = []
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if " ".join(child.cmdline()).startswith(RUNNER):
                    found.append(child)
        return found
    return []


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _gone(processes: list[psutil.Process], within: float) -> tuple[list[str], float]:
    """The processes still running after `within` seconds (then killed: they are ours), and when the
    last of the others ended (seconds from now)."""
    started, ended = time.monotonic(), [0.0]
    _, alive = psutil.wait_procs(
        processes, timeout=within, callback=lambda p: ended.append(time.monotonic() - started)
    )
    left = []
    for process in alive:
        with contextlib.suppress(psutil.Error):
            left.append(f"{process.pid} {' '.join(process.cmdline())[-90:]}")
            process.kill()
    return left, max(ended)


class RLlibBench(TrainBench):
    def __init__(self, kind: str, scratch: Path, rng, driver_in_training: bool = False) -> None:
        self.driver_in_training = driver_in_training
        watch = _RunnerWatch(str(scratch / "reference"))
        watch.start()
        try:
            super().__init__(kind, scratch, rng)
        finally:
            watch.stop()
        if watch.first is None:
            raise RuntimeError("the reference run showed no env runner process")
        self.runners_s = watch.last - watch.first
        print(f"{kind}: the reference's env runners ran {self.runners_s:.1f} s", flush=True)
        self.leaked: list[str] = []
        self.phase, self.gone_s = "", 0.0

    def run(self, index: int, report: KindReport) -> bool:
        self.leaked = []
        if self.driver_in_training or self.rng.random() < 0.5:
            struck = super().run(index, report)
            self.said = f"driver: {self.phase}, {self.said}" if struck else "driver: not struck"
            self.said += f"; its processes gone {self.gone_s:.1f} s after the kill" if struck else ""
        else:
            struck = self.run_actor(index, report)
        if self.leaked:
            report.hung += len(self.leaked)
            report.notes.append(f"run {index}: still running {GONE_S:.0f} s after the kill: {self.leaked}")
        return struck

    def await_moment(self, process, expert: Path, deadline: float) -> None:
        """`--rllib-driver-in-training`: uniform over the reference's env-runner lifetime from the
        first runner, where the default's start-up-heavy window rarely lands (2 of 20 driver kills)."""
        if not self.driver_in_training:
            return super().await_moment(process, expert, deadline)
        while process.poll() is None and not _runners(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(self.rng.uniform(0, self.runners_s))

    def strike(self, process) -> bool:
        """SIGKILL of the driver's group; every process it started must then go (env runners are
        in process groups of their own and follow their raylet)."""
        started = _descendants(process.pid)
        runners = _runners(process.pid)
        struck = _kill(process)
        expert = Path(process.args[process.args.index("--out") + 1]) / CONFIG
        newest = max(_checkpoints(expert, self.kind), default=0)
        self.phase = (
            "after metadata.json"
            if (expert / "metadata.json").exists()
            else f"training ({len(runners)} env runners up)"
            if runners
            else "before the env runners"
            if not newest
            else "after training (runners stopped)"
        )
        self.leaked, self.gone_s = _gone(started, GONE_S)
        return struck

    def run_actor(self, index: int, report: KindReport) -> bool:
        out, expert, log, process, deadline = self.launch(index)
        while process.poll() is None and not _runners(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(self.rng.uniform(0, self.runners_s))
        runners = _runners(process.pid) if process.poll() is None else []
        newest = max(_checkpoints(expert, self.kind), default=0)
        title = ""
        if runners:
            victim = self.rng.choice(runners)
            with contextlib.suppress(psutil.Error):
                title = " ".join(victim.cmdline()).split()[0]
                victim.kill()
        self.said = f"actor: {title} killed, newest checkpoint {newest}" if runners else "actor: not struck"
        started = _descendants(process.pid)
        code = _wait(process)
        report.exit_codes[str(code)] = report.exit_codes.get(str(code), 0) + 1
        if code is None:
            report.hung += 1
            report.notes.append(f"run {index}: the run with a killed env runner hung")
            return bool(runners)
        self.leaked, self.gone_s = _gone(started, GONE_S)
        text = log.read_text(errors="replace")
        out_of_service, back = text.count("taking actor"), text.count("back into service")
        self.said += f"; {out_of_service} runner(s) out of service, {back} back"
        if code == 0:
            self.check(index, report, out, 0, [], {})
            return bool(runners)
        failed = [line for line in text.splitlines() if line.startswith(f"{CONFIG} failed: ")]
        self.said += f"; exit {code}: {failed[0][:160] if failed else 'no failure line'}"
        if len(failed) != 1 or "Traceback" in text:
            self._bad(report, "invalid", f"run {index}: exit {code} without one line saying why", "actor")
        newest = max(_checkpoints(expert, self.kind), default=0)
        killed_curve = _curve(expert / "checkpoints" / "learning_curve.csv")
        killed_snapshots = {path: identity(path) for path in self._snapshot_files(expert)}
        for path in [*_checkpoints(expert, self.kind).values(), *self._snapshot_files(expert)]:
            self._bad(report, "invalid", rllib_loads(path), "after the failure")
        if (expert / "metadata.json").exists():
            meta = json.loads((expert / "metadata.json").read_text())
            if meta.get("status") in ("accepted", "rejected"):
                self._bad(report, "invalid", f"run {index}: a failed run stored status {meta['status']}")
        if self.resume(index, report, out):
            self.check(index, report, out, newest, killed_curve, killed_snapshots)
        return bool(runners)


class _RunnerWatch(threading.Thread):
    """When env runner processes of the driver writing to `out` were first and last seen."""

    def __init__(self, out: str) -> None:
        super().__init__(daemon=True)
        self.out, self.first, self.last = out, None, None
        self.done = threading.Event()

    def run(self) -> None:
        driver = None
        while not self.done.is_set():
            if driver is None:
                for process in psutil.process_iter(["cmdline"]):
                    if self.out in (process.info["cmdline"] or []):
                        driver = process.pid
            elif _runners(driver):
                now = time.monotonic()
                self.first = self.first or now
                self.last = now
            time.sleep(0.1)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
