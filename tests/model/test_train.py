"""Training: a tiny model learns, a resumed run continues exactly, outputs and refusals are right."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model import train as train_module
from pipeline.model.evaluate import load_model
from pipeline.model.train import TrainModelConfig, train_model


def _losses(path):
    with open(path / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_model_overfits_a_handful_of_babyai_episodes(sample_dataset, tmp_path):
    out = tmp_path / "overfit"
    result = train_model(
        TrainModelConfig(
            data=str(sample_dataset),
            configs=("babyai-go-to",),
            steps=120,
            batch_size=4,
            context_steps=32,
            learning_rate=1e-3,
            checkpoint_every=1000,
            eval_batches=0,
            out=str(out),
            progress=False,
        )
    )
    action_losses = [float(r["action_loss"]) for r in _losses(out)]
    assert len(action_losses) == 120 and result.step == 120
    first, last = np.mean(action_losses[:5]), np.mean(action_losses[-10:])
    assert first / last > 4.0, f"action loss only fell from {first:.3f} to {last:.3f}"
    assert result.tokens > 0 and result.tokens_per_second > 0


def _small_run(data, out, **overrides):
    settings = dict(
        data=str(data),
        configs=("metaworld-reach", "mujoco-hopper"),
        weights=(2.0, 1.0),
        steps=6,
        batch_size=2,
        context_steps=16,
        checkpoint_every=3,
        eval_batches=1,
        out=str(out),
        progress=False,
    )
    return TrainModelConfig(**{**settings, **overrides})


def test_resume_continues_exactly_where_the_checkpoint_left(sample_dataset, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_model(_small_run(sample_dataset, straight))

    interrupted = tmp_path / "interrupted"
    original = train_module._Run.train_step

    def crash_at_step_five(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(train_module._Run, "train_step", crash_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        train_model(_small_run(sample_dataset, interrupted))
    monkeypatch.setattr(train_module._Run, "train_step", original)
    assert not (interrupted / "model.safetensors").exists()  # only the step-3 checkpoint
    with pytest.raises(PipelineError, match="--resume"):
        train_model(_small_run(sample_dataset, interrupted))
    with pytest.raises(PipelineError, match="batch_size"):
        train_model(_small_run(sample_dataset, interrupted, resume=True, batch_size=3))
    result = train_model(_small_run(sample_dataset, interrupted, resume=True))
    assert result.step == 6
    a, _ = load_model(straight)
    b, _ = load_model(interrupted)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert _losses(straight) == _losses(interrupted)


def test_outputs_of_a_run(trained_model):
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "losses.csv",
        "test_losses.csv",
        "losses.png",
        "training.json",
        "checkpoint/trainer_state.pt",
    ):
        assert (trained_model / name).exists(), name
    summary = json.loads((trained_model / "training.json").read_text())
    assert summary["result"]["step"] == 8
    assert set(summary["result"]["test_losses"]) == {
        "babyai-go-to",
        "metaworld-reach",
        "mujoco-hopper",
        "atari-breakout",
    }
    model, tokenizer = load_model(trained_model)
    assert model.config.text_vocab_size == tokenizer.vocab_size
    assert model.config.context_for("atari") == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"size": "huge"}, "unknown --size"),
        ({"steps": 0}, "--steps"),
        ({"weights": (1.0,)}, "one weight per config"),
        ({"weights": (1.0, -1.0)}, "positive"),
        ({"resume": True, "overwrite": True}, "contradict"),
    ],
)
def test_bad_settings_fail_before_any_work(tmp_path, overrides, message):
    with pytest.raises(PipelineError, match=message):
        _small_run(tmp_path, tmp_path / "out", **overrides)


def test_refusals(sample_dataset, trained_model, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="nothing to resume"):
        train_model(_small_run(sample_dataset, foreign, resume=True))
    with pytest.raises(PipelineError, match="not empty"):
        train_model(_small_run(sample_dataset, foreign))
    with pytest.raises(PipelineError, match="unknown task"):
        train_model(_small_run(sample_dataset, tmp_path / "x", configs=("metaworld-rech", "mujoco-hopper")))
    earlier = tmp_path / "earlier"
    shutil.copytree(trained_model, earlier)
    with pytest.raises(PipelineError, match="cannot load"):
        train_model(_small_run(tmp_path / "no-data", earlier, overwrite=True))
    assert (earlier / "model.safetensors").exists() and (earlier / "checkpoint").exists()
