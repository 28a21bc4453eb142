"""`pipeline info`: configs, episodes, steps, sizes, policies and scores in 80 columns, or JSON."""

from __future__ import annotations

import json

import pytest
from publish_helpers import CONFIGS

from pipeline.cli import main
from pipeline.cli.browse import WIDTH, human_bytes
from pipeline.format.manifest import read_manifest
from pipeline.report.quality import quality_row
from pipeline.runtime.storage import open_location


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["info", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_overview_lists_every_config_in_80_columns(sample_dataset, capsys):
    code, out, err = _run(capsys, str(sample_dataset))
    assert code == 0 and not err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    location = open_location(str(sample_dataset))
    manifests = [read_manifest(location, c) for c in CONFIGS]
    episodes = sum(len(s.episodes) for m in manifests for s in m.shards)
    assert lines[0].startswith(f"{sample_dataset}: 4 configs, {episodes} episodes")
    for manifest in manifests:
        totals, row = manifest.totals(), quality_row(manifest)
        (line,) = [x for x in lines if x.split() and x.split()[0] == manifest.config and "/" in x]
        size = human_bytes(sum(s.num_bytes for s in manifest.shards))
        steps = totals["train"]["steps"] + totals["test"]["steps"]
        expected = [
            f"{totals['train']['episodes']}/{totals['test']['episodes']}",
            f"{steps:,}",
            *size.split(),
            f"{row.mean_return:.2f}",
            f"{row.normalised:.2f}",
        ]
        assert line.split()[1:] == expected, line
        (policy,) = [x for x in lines[lines.index("policies") :] if x.startswith(manifest.config + " ")]
        assert policy.split(None, 1)[1] == row.policy  # the provenance line, whole (it fits)


def test_one_config_shows_its_plan_score_and_episodes(sample_dataset, capsys):
    code, out, _ = _run(capsys, str(sample_dataset), "--config", "babyai-go-to", "--episodes", "2")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= WIDTH
    manifest = read_manifest(open_location(str(sample_dataset)), "babyai-go-to")
    row = quality_row(manifest)
    assert f"score     {row.normalised:.2f} (95% CI {row.ci[0]:.2f} to {row.ci[1]:.2f})" in out
    assert "policy    scripted: babyai-bot (minigrid" in out and "success 100%" in out
    records = sorted((e for s in manifest.shards for e in s.episodes), key=lambda e: e.episode_id)
    table = [line.split() for line in out.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])]
    assert [t[:4] for t in table] == [
        [str(e.episode_id), "train", str(e.seed), str(e.length)] for e in records[:2]
    ]
    assert f"the first 2 of {len(records)} episodes by id" in out


def test_json_holds_every_episode_and_the_report_numbers(sample_dataset, capsys):
    code, out, _ = _run(capsys, str(sample_dataset), "--config", "mujoco-hopper", "--json", "--episodes", "1")
    assert code == 0
    document = json.loads(out)
    manifest = read_manifest(open_location(str(sample_dataset)), "mujoco-hopper")
    (config,) = document["configs"]
    row = quality_row(manifest)
    assert config["normalised_score"] == row.normalised and config["ci95"] == list(row.ci)
    assert config["episodes"] == {s: manifest.totals()[s]["episodes"] for s in ("train", "test")}
    assert (
        config["num_bytes"] == sum(s.num_bytes for s in manifest.shards) and config["policy_kind"] == "random"
    )
    ids = sorted(e.episode_id for s in manifest.shards for e in s.episodes)
    assert [e["episode_id"] for e in document["episodes"]] == ids  # --json lists all, whatever --episodes
    overview = json.loads(_run(capsys, str(sample_dataset), "--json")[1])
    assert [c["config"] for c in overview["configs"]] == list(CONFIGS) and "episodes" not in overview


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing", "does not exist: give a dataset folder, s3://bucket/prefix, or a Hub repo id"),
        ("empty", "is not a jat-pipeline dataset"),
        ("config", "has no config 'babyai-goto': did you mean babyai-go-to?"),
    ],
)
def test_bad_input_is_one_line_exit_2(sample_dataset, tmp_path, capsys, where, message):
    argv = {
        "missing": [str(tmp_path / "missing")],
        "empty": [str(tmp_path)],
        "config": [str(sample_dataset), "--config", "babyai-goto"],
    }[where]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and message in err, err


@pytest.mark.hub
def test_info_reads_a_hub_repo_without_its_shards(sample_dataset, hub, capsys):
    from pipeline.configs.publish import PublishConfig
    from pipeline.release.publish import publish

    repo = "jat-org/info"
    publish(PublishConfig(str(sample_dataset), repo_id=repo, xet=False, progress=False, clips=False))
    code, out, _ = _run(capsys, repo)
    assert code == 0 and out.startswith(f"{repo}@{hub.head(repo)[:8]}: 4 configs")
    local = _run(capsys, str(sample_dataset))[1]
    table, folder = out.splitlines(), local.splitlines()
    assert table[table.index("") :] == folder[folder.index("") :]  # the same table as the folder's
    assert hub.counts["resolve"] > 0
