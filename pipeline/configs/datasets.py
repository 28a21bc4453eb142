"""Configs of the dataset subcommands: tasks, rollout, validate, report, demo, submit."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from pipeline.configs import megabytes, option, positive
from pipeline.errors import PipelineError
from pipeline.runtime.executor import PLACEMENT_TIMEOUT_S

DEFAULT_MAX_SHARD_MB = 256
DEFAULT_MAX_SHARD_BYTES = DEFAULT_MAX_SHARD_MB * 1024 * 1024
DEFAULT_BOOTSTRAP_REPS = 2000


@dataclass(frozen=True)
class TasksConfig:
    """List the registered tasks.

    The 157 tasks of JAT's dataset, and those of the suites added since (DeepMind Control), with their
    env ids, observation and action spaces and reference scores (JAT's experts, a random policy).
    """

    suite: str | None = None
    """Only this suite (one per env_configs/*.yaml: `pipeline tasks` lists them)."""
    json: bool = False
    """Machine-readable output (a JSON list on stdout)."""


@dataclass(frozen=True)
class RolloutConfig:
    """Record episodes into a JAT-format dataset.

    Record episodes of a suite's tasks with Ray workers into Parquet shards, one manifest per config;
    an interrupted run is finished with --resume.
    """

    out: str
    """Dataset root: a local folder or a `pyarrow.fs` URI such as s3://bucket/prefix."""
    suite: str | None = None
    """Suite to record (atari, babyai, metaworld, mujoco): all its tasks unless --tasks is given."""
    tasks: tuple[str, ...] = ()
    """Comma-separated task names, short within the suite or full configs like babyai-go-to."""
    episodes: int | None = option(None, group="budget")
    """Episodes per task (per snapshot with --learning-history). With neither this nor --steps, the
    registry's JAT budget is used."""
    steps: int | None = option(None, group="budget")
    """Steps per task instead of episodes: whole episodes are recorded until this many steps."""
    workers: int = 1
    """Ray actors recording in parallel; 0 runs everything in this process, without Ray."""
    policy: Literal["expert", "scripted", "random"] | None = None
    """Policy that acts; default: the suite's `rollout.policy` in env_configs/."""
    seed: int = 0
    """Run seed: every episode's seed and split derive from it, whoever records them."""
    test_fraction: float | None = None
    """Share of test episodes; default: JAT's per suite (Atari, Meta-World, MuJoCo 0.1, BabyAI 0.02)."""
    max_shard_bytes: int = option(
        DEFAULT_MAX_SHARD_BYTES,
        flag="--max-shard-mb",
        parse=megabytes,
        metavar="MB",
        default_text=f"{DEFAULT_MAX_SHARD_MB} MB",
    )
    """Size cap per Parquet shard."""
    episodes_per_shard: int | None = None
    """Episodes per work unit, and so per shard at most; default per suite in env_configs/."""
    max_episode_steps: int | None = None
    """Horizon override (Meta-World: 100 by default, JAT's); default: the registry's."""
    overwrite: bool = False
    """Replace these configs if present in the output (other configs are kept)."""
    resume: bool = False
    """Finish an interrupted run of the same command: record only what is missing."""
    min_return_fraction: float | None = None
    """Keep only episodes scoring at least this on the expert-normalised scale (R - random) /
    (expert - random) against the JAT reference (Gato's 0.8 filter); stored as config <task>-topNN."""
    learning_history: bool = False
    """Record the expert's learning history (Algorithm Distillation): --episodes (default 10) from
    each snapshot train-experts kept, in training order; stored as config <task>-history."""
    returns_to_go: bool = False
    """Also write meta/<config>/returns_to_go.parquet (per-step returns-to-go, for Decision Transformer
    users), outside the data files so JAT's features stay exact."""
    envs_per_worker: int | None = None
    """Envs a worker steps in lockstep so that one expert forward pass serves them all; default per
    suite. Part of the plan: the padded batch fixes the expert's rounding, so a resume keeps it."""
    address: str | None = None
    """Ray cluster address; default RAY_ADDRESS, else a local cluster."""
    experts_dir: str | None = None
    """Where train-experts saved the experts (for --policy expert)."""
    allow_weak: bool = False
    """Let --policy expert record experts the quality gate rejected or never evaluated."""
    shared_fs: bool = False
    """Declare that a local --out/--experts-dir is one filesystem mounted on every node (NFS, ...);
    without it a multi-node cluster refuses a local folder (each node would write its own disk)."""
    placement_timeout_s: float = option(PLACEMENT_TIMEOUT_S, flag="--placement-timeout", metavar="S")
    """Stop with one line when queued work has had no Ray worker placed for this many seconds (a lost
    node, a full cluster); finished units are kept for --resume."""
    progress: bool = option(True, negated="Log lines only, no progress bars")
    """Progress bars."""

    def __post_init__(self) -> None:
        if self.episodes is not None and self.steps is not None:
            raise PipelineError("give --episodes or --steps, not both")
        for name in ("episodes", "steps", "episodes_per_shard", "max_episode_steps", "envs_per_worker"):
            positive(name, getattr(self, name))
        if not isinstance(self.max_shard_bytes, int) or self.max_shard_bytes < 1:
            raise PipelineError(f"--max-shard-mb must be at least 1, got {self.max_shard_bytes} bytes")
        if self.min_return_fraction is not None and not 0 < self.min_return_fraction <= 1:
            raise PipelineError(f"--min-return-fraction must be in (0, 1], got {self.min_return_fraction}")
        if self.overwrite and self.resume:
            raise PipelineError("--overwrite and --resume exclude each other: pick one")
        if self.learning_history:
            if self.steps is not None or self.min_return_fraction is not None:
                raise PipelineError(
                    "--learning-history records whole snapshots' episodes: it takes --episodes "
                    "(per snapshot), not --steps or --min-return-fraction"
                )
            if self.policy not in (None, "expert"):
                raise PipelineError(
                    "--learning-history records a trained expert: drop --policy or use --policy expert"
                )
        if not self.placement_timeout_s > 0:
            raise PipelineError(f"--placement-timeout must be positive, got {self.placement_timeout_s}")
        if self.workers < 0:
            raise PipelineError(f"--workers must be 0 (in this process) or more, got {self.workers}")
        if self.test_fraction is not None and not 0 <= self.test_fraction < 1:
            raise PipelineError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class ValidateConfig:
    """Check a dataset against the schema, registry and manifests.

    Validate every shard; exit 1 naming the shard and row on any failure.
    """

    data_dir: str = option(positional=True, metavar="DIR")
    """Dataset folder or URI (s3://bucket/prefix)."""
    configs: tuple[str, ...] = ()
    """Comma-separated configs; default: all."""
    replay: int = option(0, metavar="K")
    """Also re-simulate each config's first K episodes (by id) from their seed and actions and fail on
    any difference (`pipeline replay`); 0: no replay."""

    def __post_init__(self) -> None:
        positive("replay", self.replay, zero=True)


@dataclass(frozen=True)
class ReportConfig:
    """Score each config against JAT's experts (table, JSON, CI gate).

    Per config: episodes, mean return, success rate, expert-normalised score with a bootstrap 95 % CI
    over episodes, a flag below JAT's 0.9 bar, and the policy that acted. With --min-normalised it is
    a gate that dataset CI can run.
    """

    data_dir: str = option(positional=True, metavar="DIR")
    """Dataset folder or URI (s3://bucket/prefix)."""
    configs: tuple[str, ...] = ()
    """Comma-separated configs; default: every config with a manifest."""
    min_normalised: float | None = option(None, metavar="X")
    """Exit 1 when any config's normalised score is below X (e.g. 0.9), listing them."""
    json: str | None = option(None, metavar="FILE")
    """Also write the rows to FILE as JSON."""
    bootstrap_reps: int = DEFAULT_BOOTSTRAP_REPS
    """Bootstrap resamples per interval."""
    seed: int = 0
    """Bootstrap seed: the same seed gives the same intervals."""

    def __post_init__(self) -> None:
        positive("bootstrap_reps", self.bootstrap_reps)
        value = self.min_normalised
        if value is not None and not (isinstance(value, int | float) and abs(value) < float("inf")):
            raise PipelineError(f"--min-normalised must be a number such as 0.9, got {value!r}")


@dataclass(frozen=True)
class DemoConfig:
    """Small end-to-end run on the embedded defaults.

    Roll out one task per suite, validate, load back with `datasets`.
    """

    out: str = "outputs/demo"
    """Local output folder."""
    episodes: int = 10
    """Episodes per task (at least 2, so that both splits exist)."""
    workers: int = 2
    """Ray actors on a local cluster; 0 runs everything in this process."""
    overwrite: bool = False
    """Replace an earlier demo's output."""

    def __post_init__(self) -> None:
        if not isinstance(self.episodes, int) or self.episodes < 2:
            raise PipelineError(f"--episodes must be at least 2 (one per split), got {self.episodes!r}")
        if self.workers < 0:
            raise PipelineError(f"--workers must be 0 (in this process) or more, got {self.workers}")


@dataclass(frozen=True)
class SubmitConfig:
    """Run a stage as a Ray cluster batch job.

    Submit `pipeline COMMAND ...` to a Ray cluster's job server, e.g.
    `pipeline submit --address http://head:8265 -- rollout --suite atari --out s3://b/jat`.
    """

    command: tuple[str, ...] = option((), remainder=True, metavar="-- COMMAND ...")
    """-- then the pipeline subcommand and its arguments, e.g. rollout --suite atari ..."""
    address: str | None = None
    """Ray dashboard (job server) address; default RAY_ADDRESS if it is http(s), else
    http://127.0.0.1:8265."""
    env: tuple[str, ...] = ()
    """Comma-separated names of environment variables to forward to the job (AWS_*, HF_TOKEN); their
    values are never logged."""
    wait: bool = option(True, negated="Return as soon as the job is submitted, printing its id")
    """Follow the job's logs until it ends, so the exit code is the job's."""
    job_id: str | None = None
    """A submission id of your choosing; default: Ray picks one."""

    def __post_init__(self) -> None:
        if self.command[:1] == ("--",):
            object.__setattr__(self, "command", self.command[1:])
        if not self.command:
            raise PipelineError(
                "name the stage to submit, e.g. `pipeline submit -- rollout --suite atari ...`"
            )
        if self.command[0] in ("submit", "demo"):
            raise PipelineError(
                f"`{self.command[0]}` cannot be submitted as a job; submit a stage such as rollout"
            )
        missing = [name for name in self.env if name not in os.environ]
        if missing:
            raise PipelineError(f"--env names unset variable(s) {missing}: export them first")
