"""Fixtures for the model tests: tokenizer, tiny model and a briefly trained model on the sample dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import SAMPLE_CONFIGS, SHORT_CONTEXTS

from pipeline.model.configuration import make_config
from pipeline.model.data import EpisodeTable, load_tables
from pipeline.model.modeling import JatModel
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.tasks.registry import get_task


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two shared cores: one intra-op thread is faster and steadier than two under contention.
    Module scope, so that the setting never outlives this folder's tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tables(sample_dataset: Path) -> dict:
    return load_tables(str(sample_dataset), list(SAMPLE_CONFIGS))


@pytest.fixture(scope="session")
def tokenizer(tables) -> MissionTokenizer:
    spec = get_task("babyai-go-to")
    return MissionTokenizer.train(EpisodeTable(tables["babyai-go-to"][0], spec, None).missions())


@pytest.fixture(scope="session")
def episode_tables(tables, tokenizer) -> dict[str, EpisodeTable]:
    return {c: EpisodeTable(tables[c][0], get_task(c), tokenizer) for c in SAMPLE_CONFIGS}


@pytest.fixture
def tiny_model(tokenizer) -> JatModel:
    torch.manual_seed(0)
    return JatModel(
        make_config("tiny", text_vocab_size=tokenizer.vocab_size, context_steps=SHORT_CONTEXTS)
    ).eval()


@pytest.fixture(scope="session")
def trained_model(sample_dataset: Path, tmp_path_factory) -> Path:
    """A tiny model trained a few steps on all four sample configs (enough to act, not to score)."""
    from pipeline.model.train import TrainModelConfig, train_model

    out = tmp_path_factory.mktemp("model") / "tiny"
    train_model(
        TrainModelConfig(
            data=str(sample_dataset),
            configs=SAMPLE_CONFIGS,
            steps=8,
            batch_size=2,
            context_steps=32,
            atari_context_steps=8,
            checkpoint_every=4,
            eval_batches=1,
            out=str(out),
            progress=False,
        )
    )
    return out
