"""Damage on disk after a rollout finished: `--resume` repairs exactly the damaged units, and
validate, report and publish refuse the damaged data with the repair command.

Each test damages a copy of one finished dataset the way disks and copies do (a truncated,
bit-flipped or deleted shard, a deleted or corrupt unit record, a deleted or corrupt manifest),
resumes, and compares with the undamaged run: the same episode ids and per-episode digests, the
same shard files with the same sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rollout_helpers import serial_run

from pipeline.checks.validate import validate
from pipeline.cli import main
from pipeline.configs.datasets import ValidateConfig
from pipeline.configs.publish import PublishConfig
from pipeline.errors import ValidationFailed
from pipeline.release.publish import publish
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.runtime.faults import FAULTS_ENV

CONFIG = "metaworld-reach"
EPISODES, PER_SHARD, SEED = 12, 2, 3
SHARD = f"data/{CONFIG}/train-00002.parquet"
RECORD = f"meta/{CONFIG}/shards/train-00002.json"
MANIFEST = f"meta/{CONFIG}/manifest.json"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The undamaged run (read-only)."""
    out = tmp_path_factory.mktemp("finished") / "ds"
    serial_run(out, CONFIG, EPISODES, PER_SHARD, SEED)
    return out


@pytest.fixture
def damaged(finished: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ds"
    shutil.copytree(finished, target)
    return target


def _files(dataset: Path) -> dict[str, str]:
    """Every shard's path and sha256, as on disk."""
    return {
        str(p.relative_to(dataset)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((dataset / "data").rglob("*.parquet"))
    }


def _episodes(dataset: Path) -> list[tuple]:
    """(episode id, digest, split, shard path, shard sha256) of every stored episode, and the drops."""
    manifest = json.loads((dataset / MANIFEST).read_text())
    stored = sorted(
        (e["episode_id"], e["digest"], s["split"], s["path"], s["sha256"])
        for s in manifest["shards"]
        for e in s["episodes"]
    )
    return stored + [("dropped", d["episode_id"]) for d in manifest["dropped"]]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:3000] if path.suffix == ".parquet" else path.read_bytes()[:100])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_checksum(path: Path) -> None:
    """A flipped hex digit in the record's shard checksum: still valid JSON, now lying."""
    record = json.loads(path.read_text())
    digest = record["shard"]["sha256"]
    record["shard"]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    path.write_text(json.dumps(record, indent=1))


DAMAGE = {
    "shard-truncated": (SHARD, _truncate, "has 3000 bytes"),
    "shard-flipped": (SHARD, _flip, "sha256 other than the recorded one"),
    "shard-deleted": (SHARD, Path.unlink, "is missing (deleted)"),
    "record-deleted": (
        RECORD,
        Path.unlink,
        "unit record of data/metaworld-reach/train-00002.parquet is missing",
    ),
    "record-truncated": (RECORD, _truncate, "is unreadable"),
    "record-lying": (RECORD, _flip_checksum, "disagrees with the manifest"),
    "manifest-deleted": (MANIFEST, Path.unlink, "manifest.json is missing: it is rebuilt"),
    "manifest-truncated": (MANIFEST, _truncate, "manifest.json is unreadable"),
}


def _resume(out: Path) -> None:
    rollout(
        RolloutConfig(
            out=str(out),
            tasks=(CONFIG,),
            episodes=EPISODES,
            episodes_per_shard=PER_SHARD,
            seed=SEED,
            workers=0,
            progress=False,
            resume=True,
        )
    )


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_resume_re_records_only_the_damaged_unit(
    kind: str, finished: Path, damaged: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, damage, said = DAMAGE[kind]
    damage(damaged / path)
    before = {p: s for p, s in _files(damaged).items() if p != SHARD}
    with caplog.at_level(logging.INFO, logger="pipeline"):
        _resume(damaged)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(said in line for line in lines), lines
    assert len(lines) == 1, lines  # one line per repair, and only the damaged unit is repaired
    if kind.startswith(("shard", "record")):
        assert "train unit 2" in lines[0] and "re-recording its 2 episode(s) 5-6" in lines[0]
    report = validate(ValidateConfig(str(damaged)))
    assert report.ok, report.errors
    assert _episodes(damaged) == _episodes(finished)  # ids, digests, splits, shard paths and sha256
    assert _files(damaged) == _files(finished)
    assert {p: s for p, s in _files(damaged).items() if p != SHARD} == before  # the others untouched


def test_an_undamaged_resume_re_records_nothing(finished: Path, damaged: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline"):
        _resume(damaged)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "0 to re-record, 0 to go" in caplog.text
    assert _episodes(damaged) == _episodes(finished)


def test_the_fix_validate_names_repairs_the_data(finished: Path, damaged: Path, capsys) -> None:
    """The user's report: a shard truncated to 3,000 bytes. validate names the shard and the
    command; that very command (serial here) repairs it; validate and report then pass."""
    _truncate(damaged / SHARD)
    assert main(["validate", str(damaged)]) == 1
    out = capsys.readouterr().out
    assert SHARD in out and "3000 bytes" in out
    fix = next(line for line in out.splitlines() if line.startswith("fix: "))
    assert fix.startswith("fix: re-record the damaged shards: pipeline rollout --out ")
    command = shlex.split(fix.partition(": pipeline ")[2])
    assert command[0] == "rollout" and command[-1] == "--resume"
    assert main([*command, "--workers", "0", "--no-progress", "--episodes-per-shard", str(PER_SHARD)]) == 0
    assert main(["validate", str(damaged)]) == 0
    assert main(["report", str(damaged)]) == 0
    assert _files(damaged) == _files(finished)


@pytest.mark.parametrize("kind", ["shard-truncated", "shard-flipped", "shard-deleted", "manifest-deleted"])
def test_report_refuses_damaged_data_in_one_line(kind: str, damaged: Path, capsys) -> None:
    path, damage, _ = DAMAGE[kind]
    damage(damaged / path)
    assert main(["report", str(damaged)]) == 2
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert text.startswith(f"error: {CONFIG}: {path}"), text
    assert "nothing was reported" in text and f"pipeline rollout --out {damaged}" in text
    assert "--resume" in text and "mean return" not in text  # no table: refused before any work


@pytest.mark.parametrize("kind", ["shard-truncated", "manifest-deleted"])
def test_publish_refuses_damaged_data_before_any_upload(kind: str, damaged: Path, tmp_path: Path) -> None:
    path, damage, _ = DAMAGE[kind]
    damage(damaged / path)
    target = tmp_path / "release"
    with pytest.raises(ValidationFailed) as refused:
        publish(PublishConfig(str(damaged), to_folder=str(target), progress=False, clips=False))
    message = str(refused.value)
    assert "\n" not in message and f"{CONFIG}: {path}" in message
    assert "nothing was published" in message and f"pipeline rollout --out {damaged}" in message
    assert not target.exists()


@pytest.mark.parametrize("hit", [2, 3])
def test_a_repair_killed_half_way_is_finished_by_the_next_resume(
    finished: Path, damaged: Path, hit: int
) -> None:
    """The repairing resume dies at its `hit`-th committed file (its lease first, then the
    re-recorded shard (2), then its record (3)): the stale record was deleted before any of it, so
    the next resume repairs the unit again instead of trusting a record of a lost shard."""
    _truncate(damaged / SHARD)
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "rollout",
        "--tasks",
        CONFIG,
        "--episodes",
        str(EPISODES),
    ]
    command += [
        "--episodes-per-shard",
        str(PER_SHARD),
        "--seed",
        str(SEED),
        "--workers",
        "0",
        "--no-progress",
    ]
    command += ["--out", str(damaged), "--resume"]
    env = {k: v for k, v in os.environ.items() if k != FAULTS_ENV}
    crashed = subprocess.run(
        command,
        env={**env, FAULTS_ENV: f"storage.committed={hit}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    assert (damaged / SHARD).exists() == (hit >= 2) and (damaged / RECORD).exists() == (hit >= 3)
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert validate(ValidateConfig(str(damaged))).ok
    assert _files(damaged) == _files(finished) and _episodes(damaged) == _episodes(finished)
