"""`pipeline.tasks.sections`: the registry's typed sections, each default declared once, every mistake one
line."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from pipeline.errors import PipelineError
from pipeline.tasks.registry import all_tasks
from pipeline.tasks.sections import (
    EXPERT_BACKEND_SECTIONS,
    AtariWrappers,
    Budget,
    EnvSection,
    ExpertSection,
    RolloutSection,
    TrainingWrappers,
    check_keys,
    check_num_gpus,
    read_expert_section,
    read_section,
)


def _refused(match: str, fn, *args) -> str:
    """Call `fn(*args)`, expect a PipelineError matching `match`, and check it is one line."""
    with pytest.raises(PipelineError, match=match) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("cls", [AtariWrappers, TrainingWrappers, EnvSection, RolloutSection])
@pytest.mark.parametrize("data", [None, {}])
def test_an_empty_or_absent_section_is_the_declared_defaults(cls, data):
    assert read_section(cls, data, "x") == cls()


def test_a_partial_section_keeps_the_declared_default_of_every_other_field():
    rollout = read_section(RolloutSection, {"policy": "expert", "episode_timeout_s": 5}, "x")
    assert rollout.policy == "expert"
    assert rollout.episode_timeout_s == 5.0 and isinstance(rollout.episode_timeout_s, float)
    assert rollout.budget == Budget(episodes=100)
    assert (rollout.test_fraction, rollout.episodes_per_shard, rollout.envs_per_worker) == (0.1, 100, 1)
    assert (rollout.bot_replan_timeout_s, rollout.bot_replan_max_subgoals) == (0.02, 100)
    assert rollout.drop_unfinished is False


def test_nested_sections_are_read_into_their_dataclasses():
    env = read_section(
        EnvSection, {"wrappers": {"noop_max": 0}, "max_episode_steps": 100, "make_kwargs": {"a": 1}}, "w"
    )
    assert env.wrappers == AtariWrappers(noop_max=0)
    assert env.wrappers.frame_stack == 4  # the nested default
    assert env.max_episode_steps == 100 and env.make_kwargs == {"a": 1} and env.goal_hidden is True
    rollout = read_section(RolloutSection, {"budget": {"steps": 500}}, "w")
    assert rollout.budget == Budget(steps=500) and rollout.budget.to_dict() == {"steps": 500}
    assert Budget(episodes=7).to_dict() == {"episodes": 7}


@pytest.mark.parametrize(
    ("cls", "data", "expected"),
    [
        (RolloutSection, {"polcy": "random"}, "w: unknown key(s) ['polcy']"),
        (EnvSection, {"wrappers": {"noop_maxx": 3}}, "w wrappers: unknown key(s) ['noop_maxx']"),
        (RolloutSection, {"budget": {"episode": 3}}, "w budget: unknown key(s) ['episode']"),
        (
            ExpertSection,
            {"training_wrappers": {"clip": True}},
            "w training_wrappers: unknown key(s) ['clip']",
        ),
    ],
)
def test_unknown_keys_are_refused_by_name_at_every_level(cls, data, expected):
    message = _refused("unknown key", read_section, cls, data, "w")
    assert message.startswith(expected) and "; allowed keys are [" in message, message


def test_check_keys_names_every_unknown_key_and_the_allowed_ones():
    message = _refused("unknown", check_keys, "f.yaml task 'x'", {"b": 1, "a": 2, "ok": 3}, {"ok"})
    assert message == "f.yaml task 'x': unknown key(s) ['a', 'b']; allowed keys are ['ok']"
    check_keys("f", {"ok": 1}, {"ok", "other"})  # known keys pass


@pytest.mark.parametrize(
    ("cls", "data", "expected"),
    [
        (RolloutSection, {"episodes_per_shard": True}, "w episodes_per_shard must be int, got True"),
        (RolloutSection, {"episodes_per_shard": 2.0}, "w episodes_per_shard must be int, got 2.0"),
        (RolloutSection, {"test_fraction": "0.1"}, "w test_fraction must be float, got '0.1'"),
        (RolloutSection, {"test_fraction": math.nan}, "w test_fraction must be float, got nan"),
        (RolloutSection, {"drop_unfinished": "yes"}, "w drop_unfinished must be bool, got 'yes'"),
        (RolloutSection, {"policy": 3}, "w policy must be str, got 3"),
        (EnvSection, {"make_kwargs": [1]}, "w make_kwargs must be a mapping, got [1]"),
        (EnvSection, {"max_episode_steps": "100"}, "w max_episode_steps must be int, got '100'"),
        (EnvSection, {"wrappers": 4}, "w wrappers must be a mapping, got int"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_with_its_place(cls, data, expected):
    message = _refused("must be", read_section, cls, data, "w")
    assert message.startswith(expected), message
    assert message.endswith("(fix the file)")


def test_optional_fields_take_none():
    assert read_section(EnvSection, {"max_episode_steps": None}, "w").max_episode_steps is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"test_fraction": 1.0}, "w: test_fraction must be in [0, 1), got 1.0"),
        ({"episode_timeout_s": 0}, "w: episode_timeout_s must be a positive number of seconds, got 0.0"),
        ({"bot_replan_max_subgoals": 0}, "w: bot_replan_max_subgoals must be a positive integer, got 0"),
        ({"envs_per_worker": -1}, "w: envs_per_worker must be a positive integer, got -1"),
        ({"budget": {}}, "w budget: give exactly one of `episodes` and `steps`"),
        ({"budget": {"episodes": 2, "steps": 9}}, "w budget: give exactly one of `episodes` and `steps`"),
        ({"budget": {"steps": 0}}, "w budget: steps must be a positive integer, got 0"),
    ],
)
def test_cross_field_checks_become_one_line_errors_with_their_place(data, expected):
    assert _refused("", read_section, RolloutSection, data, "w") == expected


def test_the_dataclasses_check_themselves_too():
    with pytest.raises(ValueError, match="exactly one"):
        Budget()
    with pytest.raises(ValueError, match="num_cpus"):
        ExpertSection(num_cpus=0)
    with pytest.raises(ValueError, match="num_gpus"):
        ExpertSection(num_gpus=1.5)


def test_a_section_that_is_not_a_mapping_is_refused():
    assert _refused("", read_section, RolloutSection, [1, 2], "f defaults rollout") == (
        "f defaults rollout must be a mapping, got list (fix the file)"
    )


def test_expert_backend_sub_sections_are_gathered_as_hyperparameters():
    data = {"backend": "sb3", "steps": 1000, "sb3": {"algo": "ppo"}, "sample-factory": {"rollout": 32}}
    expert = read_expert_section(data, "e")
    assert expert.backend == "sb3" and expert.steps == 1000
    assert expert.hyperparameters == {"sb3": {"algo": "ppo"}, "sample-factory": {"rollout": 32}}
    assert expert.settings("sb3") == {"algo": "ppo"}
    assert expert.settings("babyai-bot") == {}
    expert.settings("sb3")["algo"] = "sac"  # a copy: the frozen section is not changed through it
    assert expert.settings("sb3") == {"algo": "ppo"}
    assert data["sb3"] == {"algo": "ppo"} and "sb3" in data  # the caller's mapping is left alone
    assert read_expert_section({}, "e") == ExpertSection()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"sb3": [1]}, "e sb3 must be a mapping of hyperparameters, got [1]"),
        ({"hyperparameters": {}}, "e: put a backend's settings under its name (sample-factory:, sb3:)"),
        ({"sb4": {}}, "e: unknown key(s) ['sb4']"),
        ({"num_gpus": 1.5}, "e: num_gpus must be 0, a fraction below 1 (a shared GPU) or a whole number"),
        ({"threshold": "high"}, "e threshold must be float, got 'high'"),
    ],
)
def test_expert_section_mistakes_are_one_line(data, expected):
    assert _refused("", read_expert_section, data, "e").startswith(expected)


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (0.25, 0.25), (1, 1.0), (2.0, 2.0)])
def test_gpus_are_none_a_fraction_or_whole(value, expected):
    assert check_num_gpus("--num-gpus", value) == expected


@pytest.mark.parametrize("value", [1.5, -1, True, "1", None, 0.0001 - 1])
def test_other_gpu_counts_are_refused_naming_the_flag(value):
    message = _refused("", check_num_gpus, "--num-gpus", value)
    assert message.startswith("--num-gpus must be 0, a fraction below 1") and message.endswith(repr(value))


def test_backend_sub_sections_are_the_backends_that_exist():
    from experts.base import BACKENDS

    assert set(EXPERT_BACKEND_SECTIONS) == set(BACKENDS)


def test_every_registered_task_reads_its_fields_from_these_sections():
    """A key the YAML leaves out is the dataclass default (declared once), in every suite."""
    tasks = all_tasks()
    assert len(tasks) == 157 + 28  # JAT's tasks and DeepMind Control's
    for spec in tasks.values():
        assert isinstance(spec.rollout, RolloutSection) and isinstance(spec.expert, ExpertSection)
        assert isinstance(spec.env, EnvSection) and isinstance(spec.env.wrappers, AtariWrappers)
    atari, mujoco = tasks["atari-breakout"], tasks["mujoco-hopper"]
    assert atari.env.wrappers == AtariWrappers()  # atari.yaml spells out JAT's values: the defaults
    # MuJoCo's YAML sets no Atari wrappers and no goal: they are the declared defaults
    assert mujoco.env.wrappers == AtariWrappers() and mujoco.env.goal_hidden is True
    defaults = {f.name: f.default for f in fields(TrainingWrappers)}
    assert defaults == {"episodic_life": False, "clip_rewards": False}
    assert mujoco.expert.training_wrappers == TrainingWrappers()
    assert atari.expert.training_wrappers == TrainingWrappers(episodic_life=True, clip_rewards=True)
