"""`--episodes N` stores N episodes: dropped episodes are replaced, in bounded rounds, by episodes
whose ids and seeds follow from the plan, so the same command, a resume and a retry all give the
same dataset, and the manifest still accounts for every planned id (stored or dropped).

BabyAI's unlock-to-unlock is the real case: minigrid's bot runs away on about half of its seeds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.format.plan import is_test
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.runtime.faults import FAULTS_ENV
from pipeline.tasks.registry import all_tasks

CONFIG = "babyai-unlock-to-unlock"
EPISODES = 10


def _manifest(dataset: Path) -> dict:
    return json.loads((dataset / "meta" / CONFIG / "manifest.json").read_text())


def _content(dataset: Path) -> tuple[list[tuple], list[tuple]]:
    """Stored (id, seed, digest, split) and dropped (id, seed, reason), sorted."""
    manifest = _manifest(dataset)
    stored = sorted(
        (e["episode_id"], e["seed"], e["digest"], s["split"])
        for s in manifest["shards"]
        for e in s["episodes"]
    )
    dropped = sorted((d["episode_id"], d["seed"], d["reason"]) for d in manifest["dropped"])
    return stored, dropped


def _run(out: Path, **kwargs: object) -> None:
    rollout(
        RolloutConfig(out=str(out), tasks=(CONFIG,), episodes=EPISODES, workers=0, progress=False, **kwargs)
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replaced") / "ds"
    _run(out)
    return out


def test_episodes_n_stores_n_with_every_drop_kept(recorded: Path) -> None:
    manifest = _manifest(recorded)
    stored, dropped = _content(recorded)
    planned = manifest["plan"]["planned_episodes"]
    assert dropped, "the bot no longer runs away on unlock-to-unlock: pick a task that drops"
    assert len(stored) == EPISODES and planned == EPISODES + len(dropped)
    assert manifest["plan"]["replacement_rounds"] >= 1
    assert sorted([e[0] for e in stored] + [d[0] for d in dropped]) == list(range(planned))
    assert all(reason.startswith("policy step limit") for _, _, reason in dropped)
    # the splits as planned for the first N ids: 2% test rounds to none, the last id is forced to test
    assert Counter(e[3] for e in stored) == {"train": EPISODES - 1, "test": 1}
    report = validate(ValidateConfig(str(recorded)))
    assert report.ok, report.errors


def test_the_same_command_gives_the_same_dataset(recorded: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    _run(again)
    assert _content(again) == _content(recorded)


def _cli(out: Path, *extra: str, faults: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != FAULTS_ENV}
    if faults:
        env[FAULTS_ENV] = faults
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
    return subprocess.run(
        [*command, "--workers", "0", "--no-progress", "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("hit", [8, 9, 10, 11])
def test_a_driver_killed_during_replacement_rounds_resumes_exactly(
    recorded: Path, tmp_path: Path, hit: int
) -> None:
    """The driver dies at its `hit`-th committed file: (8) a round's plan written, (9) a replacement
    shard written, (10) its record written, (11) the next round planned; --resume ends the same."""
    out = tmp_path / "ds"
    crashed = _cli(out, faults=f"storage.committed={hit}")
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    plan = json.loads((out / "meta" / CONFIG / "plan.json").read_text())
    assert plan["replacement_rounds"] >= 1, f"hit {hit} fell before the replacement rounds"
    assert not (out / "meta" / CONFIG / "manifest.json").exists()
    resumed = _cli(out, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _content(out) == _content(recorded)
    report = validate(ValidateConfig(str(out)))
    assert report.ok, report.errors


def test_a_task_that_cannot_reach_n_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bot allowed 1 subgoal per replan drops nearly every episode: the bound is reached, the
    run fails naming the drop rate and the fix, and the config is not committed."""
    spec = all_tasks()[CONFIG]
    monkeypatch.setitem(
        all_tasks(), CONFIG, replace(spec, rollout=replace(spec.rollout, bot_replan_max_subgoals=1))
    )
    out = tmp_path / "ds"
    with pytest.raises(PipelineError) as failed:
        _run(out)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"{CONFIG}: ") and "of the 10 episodes asked for are stored" in message
    assert "% " in message or "%;" in message  # the drop rate
    assert "policy step limit" in message and "--episodes" in message and "--policy" in message
    assert not (out / "meta" / CONFIG / "manifest.json").exists()


def test_validate_checks_the_stored_count_against_the_budget(recorded: Path, tmp_path: Path) -> None:
    """A manifest whose plan asks for more than it stores (edited, or written by a broken run) fails."""
    copy = tmp_path / "ds"
    shutil.copytree(recorded, copy)
    path = copy / "meta" / CONFIG / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["plan"]["budget"]["episodes"] = EPISODES + 1
    path.write_text(json.dumps(manifest))
    report = validate(ValidateConfig(str(copy)))
    expected = Counter(
        "test" if is_test(i, 0.02) or i == EPISODES - 1 else "train" for i in range(EPISODES + 1)
    )
    assert any(
        f"{EPISODES - 1} train episodes stored, --episodes {EPISODES + 1} asks for {expected['train']}" in e
        for e in report.errors
    ), report.errors


def test_a_plan_from_before_replacements_resumes_as_planned(tmp_path: Path) -> None:
    """A rule-2 plan (older folders) resumes without replacements rather than being refused."""
    out = tmp_path / "ds"
    crashed = _cli(out, faults="storage.committed=4")  # after plan.json and the first shard
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    plan_path = out / "meta" / CONFIG / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["split_rule"] = 2
    del plan["forced_train"], plan["replacement_rounds"]
    plan_path.write_text(json.dumps(plan))
    resumed = _cli(out, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    manifest = _manifest(out)
    assert manifest["plan"]["split_rule"] == 2 and manifest["plan"]["planned_episodes"] == EPISODES
    assert "replacement_rounds" not in manifest["plan"]
    report = validate(ValidateConfig(str(out)))
    assert report.ok, report.errors


def test_a_damaged_replacement_shard_is_repaired_exactly(recorded: Path, tmp_path: Path) -> None:
    """Damage meets replacement: the last round's shard truncated and the test unit's record lost;
    --resume re-records those units alone, and nothing is replaced twice."""
    copy = tmp_path / "ds"
    shutil.copytree(recorded, copy)
    last = max((copy / "data" / CONFIG).glob("train-*.parquet"))
    last.write_bytes(last.read_bytes()[:1000])
    (copy / "meta" / CONFIG / "shards" / "test-00000.json").unlink()
    _run(copy, resume=True)
    assert _content(copy) == _content(recorded)
    assert _manifest(copy)["plan"] == _manifest(recorded)["plan"]
    assert validate(ValidateConfig(str(copy))).ok
