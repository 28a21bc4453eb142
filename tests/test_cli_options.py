"""`pipeline.cli.options`: each subcommand is generated from its stage's config, declared once there."""

from __future__ import annotations

import argparse
import dataclasses
from typing import get_args

import pytest

from pipeline.cli import build_parser, main
from pipeline.cli.options import config_from, field_docs
from pipeline.configs import cli_of
from pipeline.configs.datasets import RolloutConfig, SubmitConfig
from pipeline.configs.experts import Device, TrainExpertsConfig
from pipeline.configs.model import ModelSize, TrainModelConfig
from pipeline.configs.publish import PublishConfig


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _parse(*argv: str) -> object:
    args = build_parser().parse_args(list(argv))
    return config_from(args.config_class, args)


def test_every_subcommand_has_exactly_its_configs_fields_as_options():
    for name, parser in _subcommands().items():
        cls = parser.get_default("config_class")
        fields = {f.name for f in dataclasses.fields(cls) if not cli_of(f).hidden}
        dests = {a.dest for a in parser._actions if a.dest not in ("help", "verbose")}
        assert dests == fields, name
        assert "--verbose" in parser._option_string_actions, name  # every subcommand takes it too
        docs = field_docs(cls)
        assert fields <= set(docs), f"{cls.__name__}: fields without a docstring {fields - set(docs)}"


def test_a_command_line_builds_the_config_the_python_api_would():
    config = _parse(
        "rollout", "--tasks", "babyai-go-to, mujoco-hopper", "--steps", "50", "--out", "o", "--workers", "0",
        "--max-shard-mb", "2", "--no-progress", "--placement-timeout", "9", "--policy", "random",
    )  # fmt: skip
    assert config == RolloutConfig(
        out="o",
        tasks=("babyai-go-to", "mujoco-hopper"),
        steps=50,
        workers=0,
        max_shard_bytes=2 * 1024 * 1024,
        progress=False,
        placement_timeout_s=9.0,
        policy="random",
    )
    assert _parse("rollout", "--out", "o") == RolloutConfig(out="o")  # every default is the config's


def test_repeated_pairs_mixtures_and_remainders():
    experts = _parse("train-experts", "--out", "e", "--set", "learning_rate=1e-4", "--set", "n_steps=[8]")
    assert experts == TrainExpertsConfig(out="e", hyperparameters={"learning_rate": 1e-4, "n_steps": [8]})
    model = _parse(
        "train-model", "--data", "d", "--configs", "babyai-go-to:2,metaworld-reach", "--lr", "1e-3"
    )
    assert model == TrainModelConfig(
        data="d", configs=("babyai-go-to", "metaworld-reach"), weights=(2.0, 1.0), learning_rate=1e-3
    )
    assert TrainModelConfig(data="d", configs=("babyai-go-to:2", "metaworld-reach")) == model.__class__(
        data="d", configs=("babyai-go-to", "metaworld-reach"), weights=(2.0, 1.0)
    )
    submit = _parse("submit", "--no-wait", "--", "rollout", "--suite", "atari", "--out", "s3://b/x")
    assert submit == SubmitConfig(command=("rollout", "--suite", "atari", "--out", "s3://b/x"), wait=False)
    published = _parse("publish", "data", "--repo-id", "org/name", "--no-xet", "--max-commit-mb", "3")
    assert published == PublishConfig("data", repo_id="org/name", xet=False, max_commit_bytes=3 << 20)


def test_help_comes_from_the_field_docstrings_with_the_default():
    parser = _subcommands()["rollout"]
    (shard,) = [a for a in parser._actions if a.dest == "max_shard_bytes"]
    assert shard.option_strings == ["--max-shard-mb"]
    assert shard.help == "Size cap per Parquet shard (default: 256 MB)."
    (progress,) = [a for a in parser._actions if a.dest == "progress"]
    assert progress.option_strings == ["--no-progress"] and progress.default is True
    (device,) = [a for a in _subcommands()["train-experts"]._actions if a.dest == "device"]
    assert tuple(device.choices) == get_args(Device)


def test_choices_agree_with_the_code_that_uses_them():
    from experts.device import DEVICES
    from pipeline.model.configuration import SIZES

    assert set(SIZES) == set(get_args(ModelSize))
    assert get_args(Device) == DEVICES


@pytest.mark.parametrize(
    ("argv", "cause"),
    [
        (["rollout", "--out", "o", "--episodes", "two"], "--episodes: must be an integer, got 'two'"),
        (["rollout", "--out", "o", "--episodes", "0"], "--episodes must be a positive integer, got 0"),
        (["rollout", "--episodes", "2"], "the following arguments are required: --out"),
        (["rollout", "--out", "o", "--episodes", "2", "--steps", "9"], "--steps: not allowed with"),
        (["rollout", "--out", "o", "--policy", "expertt"], "--policy: invalid choice: 'expertt'"),
        (["train-experts", "--out", "e", "--set", "lr"], "--set: expected KEY=VALUE, got 'lr'"),
        (["train-model", "--data", "d", "--configs", "a:x"], "bad sampling weight in 'a:x'"),
        (["train-experts", "--out", "e", "--workers", "-1"], "--workers must be 0 or a positive integer"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv, cause, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and cause in err[0], err
