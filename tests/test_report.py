"""`pipeline report`: each config's quality against JAT's experts, checked against the manifests.

The dataset is conftest's `sample_dataset` (four tasks, one per suite, recorded for real); every
expected value is recomputed here from the raw manifest JSON and the registry's reference returns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.release.card import render_card
from pipeline.report.quality import JAT_BAR, describe_policy
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task

CONFIGS = ("atari-breakout", "babyai-go-to", "metaworld-reach", "mujoco-hopper")  # sorted, as listed


def _expected(dataset: Path, config: str) -> dict:
    """The row's values computed from the manifest file directly."""
    manifest = json.loads((dataset / "meta" / config / "manifest.json").read_text())
    episodes = [(s["split"], e) for s in manifest["shards"] for e in s["episodes"]]
    returns = [e["episode_return"] for _, e in episodes]
    successes = [e["success"] for _, e in episodes if e["success"] is not None]
    scores = get_task(config).scores
    mean = sum(returns) / len(returns)
    per_episode = [(r - scores.random_mean) / (scores.expert_mean - scores.random_mean) for r in returns]
    return {
        "train": sum(1 for split, _ in episodes if split == "train"),
        "test": sum(1 for split, _ in episodes if split == "test"),
        "mean_return": mean,
        "success_rate": sum(successes) / len(successes) if successes else None,
        "normalised": (mean - scores.random_mean) / (scores.expert_mean - scores.random_mean),
        "range": (min(per_episode), max(per_episode)),
        "policy": manifest["plan"]["policy"],
        "provenance": manifest["provenance"],
    }


def _report(tmp_path: Path, dataset: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "report.json"
    code = main(["report", str(dataset), "--json", str(out), *extra])
    return code, json.loads(out.read_text())


def test_table_and_json_match_the_manifests(
    sample_dataset: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, report = _report(tmp_path, sample_dataset)
    assert code == 0
    table = capsys.readouterr().out
    assert max(len(line) for line in table.splitlines()) <= 80, table  # it was 133 columns wide
    assert [r["config"] for r in report["configs"]] == list(CONFIGS)
    assert (report["bar"], report["bootstrap_reps"], report["seed"]) == (JAT_BAR, 2000, 0)
    for row in report["configs"]:
        want = _expected(sample_dataset, row["config"])
        assert row["episodes"] == {"train": want["train"], "test": want["test"]}
        assert row["mean_return"] == pytest.approx(want["mean_return"], rel=1e-9)
        assert row["normalised_score"] == pytest.approx(want["normalised"], rel=1e-9, abs=1e-12)
        low, high = row["ci95"]
        assert want["range"][0] - 1e-12 <= low <= row["normalised_score"] <= high <= want["range"][1] + 1e-12
        assert row["below_bar"] == (want["normalised"] < JAT_BAR)
        assert row["policy_kind"] == want["policy"] and row["provenance"] == want["provenance"]
        if row["suite"] in ("babyai", "metaworld"):  # suites that define success
            assert want["success_rate"] is not None
            assert row["success_rate"] == pytest.approx(want["success_rate"])
        else:
            assert row["success_rate"] is None and want["success_rate"] is None
        line = next(line for line in table.splitlines() if line.strip().startswith(row["config"] + " "))
        cells = line.split()
        assert f"{want['train']}/{want['test']}" in cells
        assert f"{want['mean_return']:.2f}" in cells and f"{want['normalised']:.3f}" in cells
        assert ("<" in cells) == (want["normalised"] < JAT_BAR)
        if want["success_rate"] is None:
            assert "%" not in line
    by_config = {r["config"]: r for r in report["configs"]}
    assert by_config["babyai-go-to"]["policy"].startswith("scripted: babyai-bot (minigrid ")
    assert by_config["metaworld-reach"]["policy"].startswith("scripted: metaworld-scripted (metaworld ")
    assert by_config["mujoco-hopper"]["policy"] == "random"
    assert by_config["mujoco-hopper"]["below_bar"] is True  # a random policy is far below JAT's experts
    (random_line,) = [
        line for line in table.splitlines() if line.startswith("policy of ") and "hopper" in line
    ]
    assert random_line.endswith(": random"), random_line  # the policy is a note below the table, whole


def test_bootstrap_is_deterministic_per_seed(sample_dataset: Path, tmp_path: Path) -> None:
    args = ("--configs", "mujoco-hopper,babyai-go-to", "--bootstrap-reps", "300")
    _, first = _report(tmp_path, sample_dataset, *args, "--seed", "7")
    _, again = _report(tmp_path, sample_dataset, *args, "--seed", "7")
    _, other = _report(tmp_path, sample_dataset, *args, "--seed", "8")
    assert [r["config"] for r in first["configs"]] == ["mujoco-hopper", "babyai-go-to"]  # the order asked
    assert first == again
    assert [r["normalised_score"] for r in other["configs"]] == [
        r["normalised_score"] for r in first["configs"]
    ]
    assert [r["ci95"] for r in other["configs"]] != [r["ci95"] for r in first["configs"]]


def test_min_normalised_gates_with_exit_codes(sample_dataset: Path, tmp_path: Path, capsys) -> None:
    scores = {c: _expected(sample_dataset, c)["normalised"] for c in CONFIGS}
    low = min(scores.values()) - 1
    assert main(["report", str(sample_dataset), "--min-normalised", f"{low}"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"all 4 config(s) score at least {low:g}"

    bar = max(scores.values()) + 1
    assert main(["report", str(sample_dataset), "--min-normalised", f"{bar}"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    listed = ", ".join(f"{c} ({scores[c]:.3f})" for c in CONFIGS)
    assert last == f"4 config(s) below --min-normalised {bar:g}: {listed}"

    lowest, second = sorted(scores.values())[:2]
    assert lowest < second
    between = (lowest + second) / 2  # exactly one config is below it (not a score itself: no tie)
    assert main(["report", str(sample_dataset), f"--min-normalised={between!r}"]) == 1  # may be < 0
    worst = min(scores, key=scores.get)
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(f": {worst} ({scores[worst]:.3f})")


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["--configs", "mujoco-hoper"], "has no config 'mujoco-hoper': did you mean mujoco-hopper?"),
        (["--min-normalised", "high"], "--min-normalised: must be a number such as 0.5, got 'high'"),
        (["--min-normalised", "nan"], "--min-normalised must be a number"),
        (["--bootstrap-reps", "0"], "--bootstrap-reps must be a positive integer, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sample_dataset: Path, capsys, args: list[str], cause: str) -> None:
    assert main(["report", str(sample_dataset), *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and cause in lines[0], captured.err
    assert captured.out == ""


def test_missing_or_empty_dataset_is_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no finished config" in capsys.readouterr().err


def test_variant_config_is_scored_against_its_task(dataset_copy: Path, tmp_path: Path) -> None:
    """A `-top80` config has no registry entry of its own: JAT's references of its task apply."""
    meta = dataset_copy / "meta"
    shutil.move(meta / "mujoco-hopper", meta / "mujoco-hopper-top80")
    path = meta / "mujoco-hopper-top80" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "config": "mujoco-hopper-top80"}))
    _, report = _report(tmp_path, dataset_copy, "--configs", "mujoco-hopper-top80")
    (row,) = report["configs"]
    assert row["normalised_score"] == pytest.approx(
        _expected(dataset_copy, "mujoco-hopper-top80")["normalised"]
    )


def test_card_has_the_same_quality_table(sample_dataset: Path, tmp_path: Path) -> None:
    _, report = _report(tmp_path, sample_dataset)
    card = render_card(open_location(str(sample_dataset)), list(CONFIGS))
    section = card.split("## Quality against JAT's experts", 1)[1].split("\n## ", 1)[0]
    for row in report["configs"]:
        low, high = row["ci95"]
        flag = "yes" if row["below_bar"] else ""
        episodes = row["episodes"]["train"] + row["episodes"]["test"]
        expected = (
            f"| {row['config']} | {row['policy']} | {episodes} | {row['normalised_score']:.3f} | "
            f"{low:.3f} to {high:.3f} | {flag} |"
        )
        assert expected in section, section


def test_policy_description_names_an_expert_backend_and_its_evaluation() -> None:
    provenance = {
        "policy": "expert",
        "backend": "sb3",
        "algo": "tqc",
        "model_dir": "experts/mujoco-hopper/model",
        "steps_trained": 1_000_000,
        "stable-baselines3": "2.7.0",
        "evaluation": {"normalised": 0.953, "episodes": 20},
        "status": "accepted",
    }
    text = describe_policy({"policy": "expert"}, provenance)
    assert text == (
        "expert: sb3 tqc, 1,000,000 steps trained, evaluated 0.95 over 20 episodes (accepted) "
        "(stable-baselines3 2.7.0)"
    )
    assert describe_policy({"policy": "random"}, {"policy": "random"}) == "random"
