"""Rollout resume: the wall time a crash costs, against the same run left alone.

`pipeline rollout` survives two kinds of crash (README, "How it works"): a dead actor is replaced and
its unit re-run by the driver, and a dead driver is finished by re-running the same command with
`--resume`, which keeps every unit a record vouches for and re-plans only the missing episodes. Both
must give the same episodes; this measures what they cost in time. Every arm is a real
`python -m pipeline.cli rollout` subprocess, same task, command and seed, into a fresh folder:

- uninterrupted: the command, run to completion;
- driver killed:  the command is started in its own session; once `--kill-at` (default half) of the
                  planned episodes are committed (counted in the unit records under
                  `meta/<config>/shards/`, written after each shard's commit) and then an in-flight
                  shard is `--unit-phase` (default half) written, everything it started gets SIGKILL:
                  its process group (driver, raylet, GCS, agents) and, by pid, the rollout actors,
                  which Ray puts in process groups of their own (`--kill-scope group` kills the group
                  only, as tests/test_fault_tolerance.py does: the actors then live on for a second
                  or two and finish their units). Once every process of that Ray instance is gone,
                  the same command with `--resume` runs to completion. total = time until the kill +
                  the resumed run; the pause between them (waiting for the processes to die) is not in;
- actor killed:   at the same point, the rollout actor (`ray::_Remote...`) recording that shard gets
                  SIGKILL; the driver must start a new actor, re-run the unit and finish alone.

The wait for `--unit-phase` matters: a count of committed episodes is reached just as an actor commits,
when that actor (with equal units started together, every actor) holds no work; a crash at a random
moment finds each actor half-way through a unit on average.

lost = total - uninterrupted of the same repeat (arms of one repeat run back to back, under about the
same load), and the ratio total / uninterrupted. "start-up" is the time from a process start to the
first shard file under `.tmp/` (Ray up, actor up, env built, recording): a resume pays it again.
"CPU s" is the user + system time of every process of the arm's runs (driver, Ray's daemons, actors,
replacement actors), sampled every 0.25 s (a process that exits loses at most its last sample); it
moves much less than wall time with other jobs on a shared machine.

Episode accounting (from files, no estimates): committed before the resume = episodes in the unit
records once every killed process is gone; recorded by the resume = planned - committed, checked against
the records the resume adds; in flight = the units with a temporary shard under `.tmp/` (or a shard
committed without its record) at the kill: their episodes are recorded again from the start. Of
these, "already written" counts the episodes in row groups that had reached the temporary shard: the
unit's shard in the uninterrupted run has the same episodes and bytes, so its row-group offsets tell
how many episodes the truncated file held (up to 7 more per unit may have been played and not yet
flushed, `ShardWriter` writes 8 per row group).

Every arm's dataset must pass `pipeline.checks.validate.validate` and hold exactly the uninterrupted run's
set of (episode_id, digest) from `meta/<config>/manifest.json`; otherwise the script exits 1 (the
folder is kept). Subprocesses get a private RAY_TMPDIR under the scratch folder, so the check that a
killed Ray instance is gone looks at that instance only (`ray stop --force` would stop every Ray
process on the machine, other users' included) and its files are removed at the end.

    .venv/bin/python benchmarks/rollout_resume.py                      # 2 repeats, 6-10 min on 2 cores
    .venv/bin/python benchmarks/rollout_resume.py --episodes 2000 --repeats 1 --no-actor-kill
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
from harness import cli_command, make_console, private_ray, spread, write_json
from rich.markup import escape
from rich.table import Table

from pipeline.configs.datasets import ValidateConfig
from pipeline.format.schema import DATA_DIR, MANIFEST_PATH, SHARD_RECORD_DIR, TMP_DIR

ACTOR_PREFIX = "ray::_Remote"  # process title of the executor's actors
TMP_SHARD = re.compile(r"-data_.+_(train|test)-(\d{5})\.parquet$")  # Location.tmp_path of a shard
POLL_S = 0.1
CPU_SAMPLE_S = 0.25
TIMEOUT_S = 1800.0

console = make_console()


class BenchmarkError(Exception):
    """A run failed, hung, or its dataset differs from the uninterrupted one."""


@dataclass
class Arm:
    """One arm of one repeat: wall times (s) and episode counts."""

    name: str
    repeat: int
    total: float = float("nan")
    startup: float = float("nan")  # process start -> first temporary shard
    until_kill: float = float("nan")
    after_kill: float = float("nan")  # the resumed run, or the rest of the run after an actor kill
    resume_startup: float = float("nan")
    pause: float = float("nan")  # kill -> the resume starts (waiting for processes to die), not in total
    retry_after: float = float("nan")  # actor kill -> the dead actor's unit starts again on a new actor
    cpu: float = float("nan")  # CPU seconds of every process of the arm's runs (Ray's included)
    planned: int = 0
    committed_before: int = 0
    in_flight_units: list[str] = field(default_factory=list)
    in_flight: int = 0
    written_lost: int | None = None  # episodes already written to in-flight shards (row groups)
    resumed: int = 0  # episodes the resume recorded, from its new unit records
    worker_died: int = 0  # "worker died" lines in the driver's output
    notes: list[str] = field(default_factory=list)


# --- reading a dataset folder ---------------------------------------------------------------------
class Records:
    """The unit records of a config written so far, each parsed once (they are moved into place whole)."""

    def __init__(self, out: str, config: str) -> None:
        self.dir = os.path.join(out, SHARD_RECORD_DIR.format(config=config))
        self.units: dict[str, dict[str, Any]] = {}

    def refresh(self) -> dict[str, dict[str, Any]]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return self.units
        for name in names:
            if name.endswith(".json") and name not in self.units:
                try:
                    with open(os.path.join(self.dir, name)) as f:
                        self.units[name] = json.load(f)
                except (OSError, ValueError):
                    continue
        return self.units

    @staticmethod
    def episodes(record: dict[str, Any]) -> int:
        """Planned episodes the unit settled: stored in its shard, or dropped."""
        shard = record["shard"]
        return (len(shard["episodes"]) if shard else 0) + len(record["dropped"])

    def committed(self) -> int:
        return sum(self.episodes(r) for r in self.refresh().values())


def tmp_shards(out: str) -> set[str]:
    """Temporary shard files under `.tmp/` (one per unit being recorded)."""
    try:
        return {n for n in os.listdir(os.path.join(out, TMP_DIR)) if TMP_SHARD.search(n)}
    except FileNotFoundError:
        return set()


def unit_of(tmp_name: str) -> str:
    """`<uuid>-data_<config>_train-00042.parquet` -> `train-00042` (the unit record's stem)."""
    match = TMP_SHARD.search(tmp_name)
    assert match is not None
    return f"{match.group(1)}-{match.group(2)}"


def manifest_episodes(out: str, config: str) -> list[tuple[int, str]]:
    with open(os.path.join(out, MANIFEST_PATH.format(config=config))) as f:
        manifest = json.load(f)
    return sorted((e["episode_id"], e["digest"]) for s in manifest["shards"] for e in s["episodes"])


def rows_in_prefix(partial: str, reference: str) -> int | None:
    """Episodes in the whole row groups of a truncated shard, from the finished same-unit shard of the
    uninterrupted run (same episodes, same bytes); None if the bytes differ."""
    import pyarrow.parquet as pq

    size = os.path.getsize(partial)
    with open(partial, "rb") as a, open(reference, "rb") as b:
        if a.read(size) != b.read(size):
            return None
    meta = pq.ParquetFile(reference).metadata
    rows = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        end = 0
        for c in range(group.num_columns):
            chunk = group.column(c)
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
            end = max(end, start + chunk.total_compressed_size)
        if end <= size:
            rows += group.num_rows
    return rows


@dataclass
class Reference:
    """The first uninterrupted run: its episodes, and its folder (for in-flight unit lookups)."""

    out: str
    config: str
    episodes: list[tuple[int, str]]
    units: dict[str, dict[str, Any]]  # record stem -> record

    def unit_episodes(self, stem: str) -> int:
        record = self.units.get(stem)
        return len(record["unit"]["episodes"]) if record else 0

    def shard_size(self, stem: str) -> int:
        record = self.units.get(stem)
        return int(record["shard"]["num_bytes"]) if record and record["shard"] else 0

    def written(self, stem: str, partial: str) -> int | None:
        record = self.units.get(stem)
        if not record or not record["shard"]:
            return None
        return rows_in_prefix(partial, os.path.join(self.out, record["shard"]["path"]))


# --- running `pipeline rollout` -------------------------------------------------------------------
class Rollout:
    """One `pipeline rollout` subprocess in its own session (so its process group is its Ray cluster)."""

    live: set[Rollout] = set()  # killed on the way out if the benchmark stops early

    def __init__(self, args: argparse.Namespace, out: str, log: str, resume: bool = False) -> None:
        command = cli_command(
            "rollout",
            "--tasks",
            args.task,
            "--policy",
            args.policy,
            "--episodes",
            str(args.episodes),
            "--workers",
            str(args.workers),
            "--seed",
            str(args.seed),
            "--no-progress",
            "--out",
            out,
            *(["--resume"] if resume else []),
        )
        self.log = log
        self._log = open(log, "a")  # noqa: SIM115  (closed in close)
        self._log.write(f"$ {' '.join(command)}\n")
        self._log.flush()
        self.started = time.monotonic()
        self.cpu: dict[int, float] = {}  # pid -> last CPU seconds seen, for every process of the run
        self._tracked: dict[int, psutil.Process] = {}
        self._next_scan = self._next_sample = 0.0
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        Rollout.live.add(self)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def sample_cpu(self, force: bool = False) -> None:
        """CPU time of the driver and every process under it (Ray's daemons, actors), polled: a process
        that exits loses at most its last `CPU_SAMPLE_S`; scanned for new processes every second."""
        now = time.monotonic()
        if not force and now < self._next_sample:
            return
        self._next_sample = now + CPU_SAMPLE_S
        if force or now >= self._next_scan:
            self._next_scan = now + 1.0
            for proc in self.descendants():
                self._tracked.setdefault(proc.pid, proc)
        for pid, proc in self._tracked.items():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            self.cpu[pid] = times.user + times.system

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    def running(self) -> bool:
        if self.process.poll() is None:
            self.sample_cpu()
            if self.elapsed > TIMEOUT_S:
                self.kill_group(self.descendants())
                raise BenchmarkError(f"rollout still running after {TIMEOUT_S:.0f} s (log: {self.log})")
            return True
        return False

    def descendants(self) -> list[psutil.Process]:
        try:
            return [
                psutil.Process(self.process.pid),
                *psutil.Process(self.process.pid).children(recursive=True),
            ]
        except psutil.Error:
            return []

    def kill_group(self, processes: list[psutil.Process] | None = None) -> None:
        """SIGKILL the session's process group (driver, raylet, GCS, agents) and `processes` by pid:
        Ray gives each worker a process group of its own, so the actors are not in the group."""
        for proc in (processes or [])[1:]:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.close()

    def close(self) -> None:
        self._log.close()
        Rollout.live.discard(self)

    def finish(self) -> float:
        """Wait for a clean exit; returns the wall time."""
        while self.running():
            time.sleep(POLL_S)
        seconds = self.elapsed
        self.close()
        if self.process.returncode != 0:
            raise BenchmarkError(f"rollout exited with {self.process.returncode}: {tail(self.log)}")
        return seconds

    def output(self) -> str:
        with open(self.log) as f:
            return f.read()


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tail(path: str, lines: int = 15) -> str:
    with open(path) as f:
        return "".join(f.readlines()[-lines:])


def watch_start(run: Rollout, out: str, ignore: set[str] = frozenset()) -> float:
    """Poll for the first new temporary shard; returns the seconds since the process started (or nan)."""
    return run.elapsed if tmp_shards(out) - ignore else float("nan")


def wait_for_kill_point(
    run: Rollout, out: str, records: Records, args: argparse.Namespace, ref: Reference, arm: Arm
) -> str | None:
    """Poll until `--kill-at` of the planned episodes are committed, then until an in-flight shard is
    `--unit-phase` written (by size, against the same unit's finished shard in the uninterrupted run).

    Without the second wait the kill would always land just after a commit, when that actor (with
    equal units, often every actor) holds no work: the best case, not a crash at a random moment.
    Returns the temporary shard that reached the phase (None with `--unit-phase 0`)."""
    target = math.ceil(args.kill_at * args.episodes)
    reached: float | None = None
    while True:
        if math.isnan(arm.startup):
            arm.startup = watch_start(run, out)
        if not run.running():
            raise BenchmarkError(f"the run ended before the kill point: {tail(run.log)}")
        if reached is None and records.committed() >= target:
            reached = time.monotonic()
        if reached is not None:
            if args.unit_phase <= 0:
                return None
            for name in sorted(tmp_shards(out)):
                final = ref.shard_size(unit_of(name))
                try:
                    size = os.path.getsize(os.path.join(out, TMP_DIR, name))
                except OSError:
                    continue
                if final and size >= args.unit_phase * final:
                    return name
            if time.monotonic() - reached > 120:
                arm.notes.append("no shard reached --unit-phase within 120 s: killed anyway")
                return None
        time.sleep(POLL_S / 2 if reached else POLL_S)


def run_to_end(run: Rollout, out: str, ignore: set[str] = frozenset()) -> tuple[float, float]:
    """(wall time, start-up) of a run left to finish."""
    startup = float("nan")
    while run.running():
        if math.isnan(startup):
            startup = watch_start(run, out, ignore)
        time.sleep(POLL_S)
    return run.finish(), startup


def ray_leftovers(ray_tmp: str, pids: list[psutil.Process]) -> list[psutil.Process]:
    """Processes of a killed Ray instance still alive: the ones seen before the kill, and any process
    naming our private RAY_TMPDIR (raylet, GCS, agents) that reparented before we looked."""
    alive = []
    for proc in pids:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    seen = {p.pid for p in alive}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid not in seen and ray_tmp in " ".join(proc.info["cmdline"] or []):
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


# --- the three arms -------------------------------------------------------------------------------
def verify(arm: Arm, out: str, config: str, reference: list[tuple[int, str]] | None) -> list[tuple[int, str]]:
    """The dataset is valid and holds exactly the reference's episodes; raises otherwise."""
    from pipeline.checks.validate import validate

    report = validate(ValidateConfig(out))
    if not report.ok:
        raise BenchmarkError(f"{arm.name}: validate failed: {report.errors[:5]}")
    episodes = manifest_episodes(out, config)
    if len({e for e, _ in episodes}) != len(episodes):
        raise BenchmarkError(f"{arm.name}: duplicate episode ids in the manifest")
    if len(episodes) != arm.planned:
        arm.notes.append(f"{len(episodes)} episodes stored of {arm.planned} planned (drops)")
    if reference is not None and episodes != reference:
        ours, theirs = set(episodes), set(reference)
        raise BenchmarkError(
            f"{arm.name}: {len(ours - theirs)} (episode_id, digest) not in the uninterrupted run, "
            f"{len(theirs - ours)} of it missing, e.g. {sorted(ours ^ theirs)[:3]}"
        )
    return episodes


def uninterrupted(args: argparse.Namespace, out: str, log: str, repeat: int) -> Arm:
    arm = Arm("uninterrupted", repeat, planned=args.episodes)
    run = Rollout(args, out, log)
    arm.total, arm.startup = run_to_end(run, out)
    arm.cpu = run.cpu_seconds
    return arm


def driver_killed(
    args: argparse.Namespace, out: str, log: str, repeat: int, ray_tmp: str, ref: Reference
) -> Arm:
    arm = Arm("driver killed + resume", repeat, planned=args.episodes)
    records = Records(out, ref.config)
    first = Rollout(args, out, log)
    wait_for_kill_point(first, out, records, args, ref, arm)
    first.sample_cpu(force=True)
    processes = first.descendants()
    first.kill_group(processes if args.kill_scope == "tree" else None)
    arm.until_kill = first.elapsed
    killed_at = time.monotonic()
    at_kill = records.committed()
    _, survivors = psutil.wait_procs(processes, timeout=30)
    leftovers = ray_leftovers(ray_tmp, survivors)
    for proc in leftovers:  # ours: they belong to the instance this arm started
        arm.notes.append(f"{proc.name()} ({proc.pid}) outlived the kill by 30 s; killed by pid")
        proc.kill()
    psutil.wait_procs(leftovers, timeout=15)
    if ray_leftovers(ray_tmp, []):
        raise BenchmarkError("the killed run's Ray instance is still running")

    before = dict(records.refresh())
    arm.committed_before = sum(Records.episodes(r) for r in before.values())
    if arm.committed_before > at_kill:
        arm.notes.append(f"{arm.committed_before - at_kill} episodes committed by actors after the kill")
    data = os.path.join(out, DATA_DIR.format(config=ref.config))
    vouched = {os.path.basename(r["shard"]["path"]) for r in before.values() if r["shard"]}
    stored = os.listdir(data) if os.path.isdir(data) else []
    orphans = [n for n in stored if n.endswith(".parquet") and n not in vouched]
    stale = tmp_shards(out)
    written: list[int | None] = []
    for name in sorted(stale):
        stem = unit_of(name)
        arm.in_flight_units.append(stem)
        arm.in_flight += ref.unit_episodes(stem)
        written.append(ref.written(stem, os.path.join(out, TMP_DIR, name)))
    for name in orphans:  # committed, record never written: resume deletes it
        stem = name.removesuffix(".parquet")
        arm.in_flight_units.append(f"{stem} (committed, no record)")
        arm.in_flight += ref.unit_episodes(stem)
        written.append(ref.unit_episodes(stem))
    arm.written_lost = None if None in written else sum(w or 0 for w in written)

    arm.pause = time.monotonic() - killed_at
    resumed = Rollout(args, out, log, resume=True)
    arm.after_kill, arm.resume_startup = run_to_end(resumed, out, ignore=stale)
    arm.total = arm.until_kill + arm.after_kill
    arm.cpu = first.cpu_seconds + resumed.cpu_seconds
    added = {k: v for k, v in records.refresh().items() if k not in before}
    arm.resumed = sum(Records.episodes(r) for r in added.values())
    if arm.resumed != arm.planned - arm.committed_before:
        raise BenchmarkError(
            f"{arm.name}: the resume recorded {arm.resumed} episodes, expected planned - committed = "
            f"{arm.planned - arm.committed_before}"
        )
    return arm


def actor_killed(args: argparse.Namespace, out: str, log: str, repeat: int, ref: Reference) -> Arm:
    arm = Arm("actor killed", repeat, planned=args.episodes)
    records = Records(out, ref.config)
    run = Rollout(args, out, log)
    target = wait_for_kill_point(run, out, records, args, ref, arm)
    victim, victim_file = None, None
    for proc in run.descendants():  # as tests/test_fault_tolerance.py finds them
        try:
            if ACTOR_PREFIX not in " ".join(proc.cmdline()):
                continue
            victim = victim or proc
            shards = {os.path.basename(f.path): f.path for f in proc.open_files() if TMP_SHARD.search(f.path)}
        except psutil.Error:
            continue
        if shards and (victim_file is None or target in shards):  # the one that reached the phase
            victim, victim_file = proc, next(iter(shards.values()))
    if victim is None:
        run.kill_group(run.descendants())
        raise BenchmarkError("no rollout actor found to kill")
    arm.committed_before = records.committed()
    run.sample_cpu(force=True)
    victim.send_signal(signal.SIGKILL)
    arm.until_kill = run.elapsed
    killed_at = time.monotonic()
    stale = tmp_shards(out)
    stem = None
    if victim_file is None:
        arm.notes.append("the killed actor held no shard open (between units)")
    else:
        stem = unit_of(os.path.basename(victim_file))
        arm.in_flight_units.append(stem)
        arm.in_flight = ref.unit_episodes(stem)
        arm.written_lost = ref.written(stem, victim_file) if os.path.exists(victim_file) else None
    while run.running():
        if stem is not None and math.isnan(arm.retry_after):
            started = {unit_of(n) for n in tmp_shards(out) - stale}  # new shard files, new actor too
            if stem in started:
                arm.retry_after = time.monotonic() - killed_at
        time.sleep(POLL_S)
    arm.total = run.finish()
    arm.cpu = run.cpu_seconds
    arm.after_kill = arm.total - arm.until_kill
    arm.worker_died = run.output().count("worker died (")  # our warning, not Ray's own message
    if arm.worker_died < 1:
        raise BenchmarkError(f"{arm.name}: the driver never reported the dead worker: {tail(log)}")
    return arm


# --- report ---------------------------------------------------------------------------------------
def print_tables(arms: list[Arm], args: argparse.Namespace) -> None:
    base = {a.repeat: a for a in arms if a.name == "uninterrupted"}
    names = list(dict.fromkeys(a.name for a in arms))
    what = f"{args.task}, {args.episodes} episodes, {args.workers} workers, policy {args.policy}"
    times = Table(
        title=escape(
            f"{what}: wall seconds, median [min-max] over {args.repeats} repeat(s); lost and ratio "
            "against the uninterrupted run of the same repeat"
        )
    )
    cpu = Table(title=escape(f"{what}: CPU seconds of every process of the arm's runs (Ray's included)"))
    for table, columns in (
        (times, ("start-up", "until kill", "after kill", "resume start-up", "total", "lost", "ratio")),
        (cpu, ("CPU s", "CPU lost", "CPU ratio")),
    ):
        table.add_column("arm", no_wrap=True)
        for column in columns:
            table.add_column(column, justify="right")
    for name in names:
        group = [a for a in arms if a.name == name]
        paired = [(a, base[a.repeat]) for a in group if a.repeat in base]
        uninterrupted = name == "uninterrupted"
        times.add_row(
            name,
            spread([a.startup for a in group]),
            spread([a.until_kill for a in group]),
            spread([a.after_kill for a in group]),
            spread([a.resume_startup for a in group]),
            spread([a.total for a in group]),
            "-" if uninterrupted else spread([a.total - b.total for a, b in paired]),
            spread([a.total / b.total for a, b in paired], 2),
        )
        cpu.add_row(
            name,
            spread([a.cpu for a in group]),
            "-" if uninterrupted else spread([a.cpu - b.cpu for a, b in paired]),
            spread([a.cpu / b.cpu for a, b in paired], 2),
        )
    console.print(times)
    console.print(cpu)

    counts = Table(title="Episodes per killed run (from the unit records and temporary shards)")
    for column in (
        "repeat",
        "arm",
        "until kill s",
        "committed before resume",
        "in-flight units",
        "their episodes (re-recorded)",
        "already written",
        "resume recorded",
        "notes",
    ):
        counts.add_column(
            column, justify="left" if column in ("arm", "in-flight units", "notes") else "right"
        )
    for a in arms:
        if a.name == "uninterrupted":
            continue
        notes = list(a.notes)
        if math.isfinite(a.pause):
            notes.append(f"pause before resume {a.pause:.1f} s (not in total)")
        if math.isfinite(a.retry_after):
            notes.append(f"unit restarted {a.retry_after:.1f} s after the kill")
        if a.worker_died:
            notes.append(f"'worker died' x{a.worker_died}")
        counts.add_row(
            str(a.repeat),
            a.name,
            f"{a.until_kill:.1f}",
            f"{a.committed_before:,} / {a.planned:,}",
            escape(", ".join(a.in_flight_units)) or "-",
            f"{a.in_flight:,}",
            "-" if a.written_lost is None else f">= {a.written_lost:,}" if a.in_flight else "0",
            f"{a.resumed:,}" if a.resumed else "-",
            escape("; ".join(notes)),
        )
    console.print(counts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="mujoco-hopper", help="one config")
    p.add_argument("--policy", default="random", choices=["expert", "scripted", "random"])
    p.add_argument(
        "--episodes",
        type=int,
        default=8000,
        help="planned episodes (hopper, 2 cores: ~55 s a run, 75-100 s under load)",
    )
    p.add_argument("--workers", type=int, default=2, help="Ray actors of every run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kill-at", type=float, default=0.5, help="share of the planned episodes committed at kill"
    )
    p.add_argument(
        "--unit-phase",
        type=float,
        default=0.5,
        help="then wait until an in-flight shard is this much written (0: kill right after a commit)",
    )
    p.add_argument(
        "--kill-scope",
        choices=["tree", "group"],
        default="tree",
        help="tree: the driver's process group and every process under it (a crash of the whole node); "
        "group: the process group only, as tests/test_fault_tolerance.py (Ray's actors, in groups of "
        "their own, live on and finish their units)",
    )
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats (median and spread)")
    p.add_argument("--no-actor-kill", dest="actor_kill", action="store_false", help="skip the actor arm")
    p.add_argument("--json", help="also write every arm's figures to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the datasets and logs (scratch folder)")
    args = p.parse_args(argv)
    if args.episodes < 2 or args.workers < 1 or args.repeats < 1 or not 0 < args.kill_at < 1:
        p.error("--episodes >= 2, --workers >= 1, --repeats >= 1 and 0 < --kill-at < 1")
    if not 0 <= args.unit_phase < 1:
        p.error("--unit-phase must be in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    # On `kill` too, stop the runs this script started (their sessions outlive it otherwise).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from pipeline.tasks.registry import get_task

    config = get_task(args.task).config
    scratch = tempfile.mkdtemp(prefix="jat-resume-")
    ray_tmp = os.path.join(scratch, "r")  # private, short (Ray's socket paths are length-limited)
    os.makedirs(ray_tmp)
    private_ray(ray_tmp, force=True)  # always a local cluster of the subprocess's own
    arms: list[Arm] = []
    reference: Reference | None = None
    failed: str | None = None
    keep: list[str] = []
    try:
        for repeat in range(1, args.repeats + 1):
            console.rule(f"repeat {repeat}/{args.repeats}, load average {load()}")
            plan = ["uninterrupted", "driver", *(["actor"] if args.actor_kill else [])]
            for kind in plan:
                out = os.path.join(scratch, f"{kind}-{repeat}")
                log = os.path.join(scratch, f"{kind}-{repeat}.log")
                try:
                    if kind == "uninterrupted":
                        arm = uninterrupted(args, out, log, repeat)
                    elif kind == "driver":
                        assert reference is not None
                        arm = driver_killed(args, out, log, repeat, ray_tmp, reference)
                    else:
                        assert reference is not None
                        arm = actor_killed(args, out, log, repeat, reference)
                    episodes = verify(arm, out, config, reference.episodes if reference else None)
                except BenchmarkError:
                    keep.append(out)
                    raise
                arms.append(arm)
                console.log(
                    f"{arm.name:<26} total {arm.total:6.1f} s  CPU {arm.cpu:6.1f} s"
                    + f"  start-up {arm.startup:5.1f} s"
                    + (f"  killed at {arm.until_kill:5.1f} s" if math.isfinite(arm.until_kill) else "")
                    + (f"  resume {arm.after_kill:5.1f} s" if kind == "driver" else "")
                    + f"  {len(episodes):,} episodes identical, valid"
                )
                if reference is None:
                    units = Records(out, config).refresh()
                    reference = Reference(
                        out, config, episodes, {k.removesuffix(".json"): v for k, v in units.items()}
                    )
                elif not args.keep:
                    shutil.rmtree(out, ignore_errors=True)
    except BenchmarkError as exc:
        failed = str(exc)
    finally:
        for run in list(Rollout.live):  # only on the way out of an error or Ctrl-C
            run.kill_group(run.descendants())
        if failed is None and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    console.print(f"load average at the end: {load()}")
    if arms:
        print_tables(arms, args)
    if args.json:
        write_json(args.json, [asdict(a) for a in arms])
    if args.keep and failed is None:
        console.print(f"datasets and logs kept in {scratch}")
    if failed is not None:
        console.print(f"[bold red]FAILED: {escape(failed)}")
        console.print(f"kept for inspection: {scratch} (folders {', '.join(keep) or '-'}, logs *.log)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
