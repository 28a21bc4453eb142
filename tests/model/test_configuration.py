"""`pipeline.model.configuration`: size presets, per-suite contexts, and tasks that fit the model."""

from __future__ import annotations

import pytest

from pipeline.errors import PipelineError
from pipeline.model.configuration import SIZES, JatConfig, check_task_fits, default_context_steps, make_config
from pipeline.tasks.registry import get_task


@pytest.mark.parametrize("size", list(SIZES))
def test_a_preset_sets_its_backbone_and_positions_for_the_longest_context(size):
    config = make_config(size, text_vocab_size=40)
    preset = SIZES[size]
    assert (config.hidden_size, config.num_layers, config.num_heads) == (
        preset["hidden_size"],
        preset["num_layers"],
        preset["num_heads"],
    )
    assert config.attention_layers == ["global", "local"] * (preset["num_layers"] // 2)
    assert config.context_steps == default_context_steps() and config.max_position_embeddings == 512
    assert (config.size_name, config.text_vocab_size, config.discrete_embed_dim) == (
        size,
        40,
        preset["discrete_embed_dim"],
    )


def test_contexts_override_per_suite_and_size_the_positions():
    config = make_config("tiny", text_vocab_size=8, context_steps={"atari": 8, "mujoco": 300})
    assert config.context_steps == {"atari": 8, "babyai": 256, "dmc": 256, "metaworld": 256, "mujoco": 300}
    assert config.max_position_embeddings == 600
    assert (config.context_for("atari"), config.context_for("mujoco"), config.context_for("other")) == (
        8,
        300,
        300,
    )


def test_the_config_round_trips_through_save_pretrained(tmp_path):
    config = make_config("tiny", text_vocab_size=33, context_steps={"babyai": 16}, observation_loss_coef=0.1)
    config.save_pretrained(tmp_path)
    loaded = JatConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert (loaded.observation_loss_coef, loaded.context_steps["babyai"], loaded.use_rewards) == (
        0.1,
        16,
        True,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": "huge"}, "unknown model size 'huge'; choose one of tiny, small, jat"),
        ({"context_steps": {"atari": 0}}, "context lengths must be positive step counts"),
        ({"context_steps": {"atari": 2.5}}, "context lengths must be positive step counts"),
    ],
)
def test_bad_sizes_and_contexts_are_refused(kwargs, message):
    with pytest.raises(PipelineError, match=message):
        make_config(**{"size": "tiny", "text_vocab_size": 8, **kwargs})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("continuous_expand", "mirror", "continuous_expand must be 'cyclic' or 'zero'"),
        ("observation_loss_coef", 1.0, r"observation_loss_coef must be in \[0, 1\)"),
        ("max_position_embeddings", 100, "a context of 256 steps needs 512 positions"),
    ],
)
def test_an_inconsistent_architecture_is_refused(field, value, message):
    config = make_config("tiny", text_vocab_size=8)
    setattr(config, field, value)
    with pytest.raises(ValueError, match=message):
        config.validate_architecture()


@pytest.mark.parametrize("task", ["atari-breakout", "babyai-go-to", "metaworld-reach", "mujoco-humanoid"])
def test_every_suites_spaces_fit_the_default_sizes(task):
    check_task_fits(make_config("tiny", text_vocab_size=8), get_task(task))  # does not raise


def test_a_task_too_large_for_the_model_is_refused_naming_each_problem():
    config = make_config("tiny", text_vocab_size=8)
    config.max_continuous_size = 100
    with pytest.raises(PipelineError) as info:
        check_task_fits(config, get_task("mujoco-humanoid"))
    assert str(info.value) == (
        "mujoco-humanoid does not fit this model: observation size 376 (+ reward) > max_continuous_size 100"
    )
    config.max_discrete_actions, config.image_size = 4, 64
    with pytest.raises(PipelineError) as info:
        check_task_fits(config, get_task("atari-breakout"))
    assert str(info.value) == (
        "atari-breakout does not fit this model: image shape (84, 84, 4) is not (64, 64, 4)"
    )
    with pytest.raises(PipelineError, match=r"18 discrete actions > max_discrete_actions 4"):
        check_task_fits(config, get_task("atari-alien"))  # Alien uses the full 18-action set
