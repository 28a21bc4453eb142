"""Expert evaluation and the quality gate rollout relies on.

An expert plays N episodes on fresh seeds (never the ones training or rollout use) in the
same env rollout records from, `pipeline.tasks.envs.make_env`, with the same action clipping. Its
mean return is normalised against JAT's reference, `(score - random) / (expert_ref - random)`,
and an expert below the threshold is rejected; the threshold can never be below 0 (random).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from experts.metadata import ExpertMetadata, ExpertStatus
from pipeline.errors import PipelineError
from pipeline.suites import get_suite
from pipeline.tasks.envs import make_env
from pipeline.tasks.episodes import EpisodeRun, play
from pipeline.tasks.policies import Policy
from pipeline.tasks.registry import TaskSpec
from pipeline.tasks.sections import check_threshold

# Evaluation seeds live far from rollout's (plan.py derives those from small run seeds) and training's.
EVAL_SEED_BASE = 1_000_000_007
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate` measured; stored as the `evaluation` section of metadata.json."""

    episodes: int
    mean_return: float
    std_return: float
    normalised: float
    random_mean: float
    expert_reference: float
    success_rate: float | None
    failed_episodes: int
    seed: int
    mean_length: float
    seeds: tuple[int, ...] = ()
    """The episode seeds played (`eval_seeds(seed, episodes)`): candidates compared on one task
    played these same episodes."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    threshold: float
    reason: str

    @property
    def status(self) -> ExpertStatus:
        return ExpertStatus.ACCEPTED if self.accepted else ExpertStatus.REJECTED


def eval_seeds(seed: int, episodes: int) -> list[int]:
    """The episode seeds of an evaluation: a function of the evaluation seed alone, so every
    candidate expert of a task (and every task) is scored on the same episodes."""
    return [EVAL_SEED_BASE + 10_000 * seed + i for i in range(episodes)]


def evaluate(policy: Policy, spec: TaskSpec, episodes: int, seed: int = 0, env: Any = None) -> EvalResult:
    """Play `episodes` episodes of `policy` on fresh seeds and score them against JAT's references."""
    if episodes < 1:
        raise PipelineError(f"evaluation needs at least 1 episode, got {episodes}")
    env = env if env is not None else make_env(spec)
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool] = []
    failed = 0
    seeds = eval_seeds(seed, episodes)
    for episode_seed in seeds:
        # the loop rollout records with (pipeline.tasks.episodes): same clipping, success and time limit
        run = EpisodeRun(env, spec, episode_seed, timeout_s=spec.rollout.episode_timeout_s)
        policy.reset(env, episode_seed)
        if play(run, lambda r: policy.act(r.observation, r.info)) is not None:
            failed += 1  # the policy gave up or the episode outlived its limit: scored as played so far
        returns.append(run.total)
        lengths.append(run.length)
        if run.success is not None or get_suite(spec.suite).success_from_rewards:
            successes.append(bool(run.success))
    mean = float(np.mean(returns))
    return EvalResult(
        episodes=episodes,
        mean_return=mean,
        std_return=float(np.std(returns)),
        normalised=float(spec.scores.normalise(mean)),
        random_mean=spec.scores.random_mean,
        expert_reference=spec.scores.expert_mean,
        success_rate=float(np.mean(successes)) if successes else None,
        failed_episodes=failed,
        seed=seed,
        mean_length=float(np.mean(lengths)),
        seeds=tuple(seeds),
    )


def gate(result: EvalResult, threshold: float = DEFAULT_THRESHOLD) -> GateDecision:
    """Accept an expert whose normalised score reaches `threshold` (>= 0, so never below random)."""
    threshold = check_threshold(threshold)
    if result.normalised >= threshold:
        return GateDecision(True, threshold, f"normalised score {result.normalised:.3f} >= {threshold:.2f}")
    return GateDecision(
        False,
        threshold,
        f"normalised score {result.normalised:.3f} < {threshold:.2f} "
        f"(mean return {result.mean_return:.2f}; random {result.random_mean:.2f}, "
        f"JAT expert {result.expert_reference:.2f})",
    )


def judged(metadata: ExpertMetadata, result: EvalResult, decision: GateDecision) -> ExpertMetadata:
    """`metadata` with an evaluation and the gate's verdict on it (status, threshold, reason)."""
    gate_record = {"threshold": decision.threshold, "reason": decision.reason}
    return replace(metadata, evaluation=result.to_dict(), gate=gate_record, status=decision.status)
