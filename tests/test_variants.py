"""Dataset variants: Gato's return filter as its own config, and returns-to-go as a sidecar."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.tasks.registry import get_task


def test_return_filter_keeps_only_strong_episodes_under_its_own_config(tmp_path):
    out = tmp_path / "ds"
    summary = rollout(
        RolloutConfig(
            out=str(out),
            tasks=("babyai-go-to",),
            episodes=16,
            workers=0,
            min_return_fraction=0.9,
            returns_to_go=True,
            progress=False,
        )
    )
    assert list(summary.configs) == ["babyai-go-to-top90"]
    manifest = json.loads((out / "meta/babyai-go-to-top90/manifest.json").read_text())
    scores = get_task("babyai-go-to").scores
    kept = [e for s in manifest["shards"] for e in s["episodes"]]
    assert kept and all(scores.normalise(e["episode_return"]) >= 0.9 for e in kept)
    below = [d for d in manifest["dropped"] if d["reason"].startswith("below min return")]
    assert below and len(kept) + len(manifest["dropped"]) == 16
    assert summary.configs["babyai-go-to-top90"]["dropped"] == len(manifest["dropped"])
    assert validate(ValidateConfig(str(out))).ok
    train = load_dataset(str(out), "babyai-go-to-top90", split="train")
    assert list(train.features) == [
        "text_observations",
        "discrete_observations",
        "discrete_actions",
        "rewards",
    ]

    rtg = pq.read_table(out / "meta/babyai-go-to-top90/returns_to_go.parquet").to_pydict()
    assert sorted(rtg["episode_id"]) == sorted(e["episode_id"] for e in kept)
    first_train = next(e for s in manifest["shards"] if s["split"] == "train" for e in s["episodes"])
    row = rtg["episode_id"].index(first_train["episode_id"])
    rewards = np.asarray(train[0]["rewards"], np.float32)
    np.testing.assert_allclose(rtg["returns_to_go"][row], np.cumsum(rewards[::-1])[::-1], rtol=1e-6)
    assert rtg["returns_to_go"][row][0] == pytest.approx(first_train["episode_return"], rel=1e-5)


def test_bad_fraction_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="min-return-fraction"):
        RolloutConfig(out=str(tmp_path), tasks=("babyai-go-to",), episodes=2, min_return_fraction=1.5)
