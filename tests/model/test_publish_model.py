"""`pipeline publish-model` and `pipeline evaluate --model ORG/NAME` against the tests' local Hub server.

The tiny model trained by conftest (a few steps on the sample dataset) is evaluated locally, published
with its evaluation, and evaluated again from the repo id, as a user would: same seed, same episodes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.model.evaluate import EvaluateConfig, evaluate
from pipeline.release.publish_model import PublishModelConfig, publish_model

pytestmark = pytest.mark.hub
REPO = "jat-org/jat-tiny"
TASK = "mujoco-hopper"
EVAL = {"tasks": (TASK,), "episodes": 1, "max_episode_steps": 20, "bootstrap_reps": 50, "progress": False}


def _returns(results: Path) -> list[dict]:
    tasks = json.loads(results.read_text())["tasks"]
    return [{k: t[k] for k in ("config", "episodes", "mean_return", "normalised_mean")} for t in tasks]


def test_publish_then_evaluate_from_the_hub_gives_the_same_results(trained_model, hub, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model, model_dir)
    evaluate(EvaluateConfig(model=str(model_dir), **EVAL))  # writes MODEL/eval, published with the model

    summary = publish_model(PublishModelConfig(str(model_dir), repo_id=REPO, xet=False))
    files = hub.files(REPO, kind="model")
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"}
    expected |= {
        "training.json",
        "losses.csv",
        "losses.png",
        f"eval/{TASK}/results.json",
        f"eval/{TASK}/scores.png",
    }
    assert expected <= set(files) and not any(p.startswith("checkpoint") for p in files)
    assert files["model.safetensors"]["lfs"]
    assert set(summary.result.uploaded) == set(files) - {".gitattributes"}

    text = hub.read(REPO, "README.md", kind="model").decode()
    header = yaml.safe_load(text.split("---", 2)[1])
    assert header["library_name"] == "jat-pipeline" and "reinforcement-learning" in header["tags"]
    local = json.loads((model_dir / "eval" / TASK / "results.json").read_text())["tasks"][0]
    [result] = header["model-index"][0]["results"]
    assert result["dataset"]["name"] == "Hopper-v5"
    assert result["metrics"][0]["value"] == f"{local['mean_return']:.2f} +/- {local['std_return']:.2f}"
    config = json.loads((model_dir / "config.json").read_text())
    assert f"| `hidden_size` | {config['hidden_size']} |" in text and f"| {TASK} | 1 |" in text
    assert f"![scores](eval/{TASK}/scores.png)" in text and f"pipeline evaluate --model {REPO}" in text

    again = publish_model(PublishModelConfig(str(model_dir), repo_id=REPO, xet=False))
    assert again.result.uploaded == () and again.result.unchanged == len(files) - 1

    # from the repo id, through the CLI, into the default output folder: the same episodes
    monkeypatch.chdir(tmp_path)
    argv = ["evaluate", "--model", REPO, "--tasks", TASK, "--episodes", "1", "--max-episode-steps", "20"]
    assert main([*argv, "--bootstrap-reps", "50", "--no-progress"]) == 0
    remote = tmp_path / "outputs" / "eval" / "jat-org--jat-tiny" / TASK / "results.json"
    assert _returns(remote) == _returns(model_dir / "eval" / TASK / "results.json")


def test_missing_repo_and_bad_input_are_one_line(trained_model, hub, tmp_path, capsys):
    with pytest.raises(PipelineError, match="neither a local folder nor a model repo"):
        evaluate(EvaluateConfig(model="jat-org/no-such-model", **EVAL))
    assert main(["evaluate", "--model", "jat-org/no-such-model", "--tasks", TASK]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "jat-org/no-such-model is neither" in errors[0], errors

    with pytest.raises(PipelineError, match="one of --repo-id"):
        PublishModelConfig(str(trained_model))
    with pytest.raises(PipelineError, match=r"missing config\.json, model\.safetensors"):
        publish_model(PublishModelConfig(str(tmp_path), repo_id=REPO, xet=False))
    assert hub.head(REPO, kind="model") is None  # refused before creating the repo

    folder = tmp_path / "folder"
    assert main(["publish-model", str(trained_model), "--to-folder", str(folder)]) == 0
    assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()
    assert not (folder / "checkpoint").exists()
    assert hub.token not in capsys.readouterr().out


def test_the_card_shows_every_evaluation_run(trained_model, tmp_path):
    """Evaluations of other configs are kept side by side (eval/<run>/) and all reach the card."""
    from pipeline.release.publish_model import publish_model as publish

    model_dir = tmp_path / "model"
    shutil.copytree(trained_model, model_dir)
    evaluate(EvaluateConfig(model=str(model_dir), **EVAL))
    evaluate(
        EvaluateConfig(model=str(model_dir), **{**EVAL, "tasks": ("babyai-go-to",), "random_baseline": False})
    )
    folder = tmp_path / "release"
    publish(PublishModelConfig(str(model_dir), to_folder=str(folder)))
    card = (folder / "README.md").read_text()
    assert f"![scores](eval/{TASK}/scores.png)" in card and "![scores](eval/babyai-go-to/scores.png)" in card
    assert card.count("`pipeline evaluate`: 1 episode(s) per task") == 2
    header = yaml.safe_load(card.split("---", 2)[1])
    assert len(header["model-index"][0]["results"]) == 2  # one result per config
    assert (folder / "eval" / "babyai-go-to" / "results.csv").is_file()
