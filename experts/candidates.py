"""Trained or scripted: the candidate experts of a task, scored on the same episodes, the better kept.

JAT recorded Meta-World with experts trained by sample-factory. Meta-World's scripted policies
need no training, but on many tasks they score well below JAT's experts (handle-pull 0.05 of
JAT's expert) while on others they match them. So for a suite with a scripted alternative,
`train-experts` first scores the scripted policy: where it passes the gate it is kept and nothing
is trained (unless `--force-train`); elsewhere a network is trained, both are scored on the same
evaluation seeds, and the higher normalised score is kept. metadata.json records both candidates,
the choice and why (`ExpertMetadata.candidates`, `chosen`, `choice_reason`); rollout acts with the
choice (`ExpertMetadata.acting_backend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experts.base import get_backend
from experts.evaluation import EvalResult, GateDecision, evaluate, gate
from pipeline.suites import get_suite
from pipeline.tasks.policies import Policy
from pipeline.tasks.registry import TaskSpec


def scripted_alternative(spec: TaskSpec) -> str | None:
    """The backend name of the task's untrained alternative expert (its suite's scripted expert,
    `Suite.scripted_expert`), compared with every trained one; None when it has none, or when the
    scripted expert is the suite's expert itself (BabyAI's bot, JAT's own BabyAI expert)."""
    scripted = get_suite(spec.suite).scripted_expert
    return scripted if scripted and scripted != spec.expert.backend else None


@dataclass(frozen=True)
class Candidate:
    """One candidate expert of a task, evaluated and gated."""

    backend: str
    evaluation: EvalResult
    decision: GateDecision

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluation": self.evaluation.to_dict(),
            "gate": {"threshold": self.decision.threshold, "reason": self.decision.reason},
            "status": self.decision.status,
        }


@dataclass(frozen=True)
class Choice:
    """The candidate kept for a task, every candidate scored, and why."""

    chosen: Candidate
    candidates: tuple[Candidate, ...]
    reason: str

    def __post_init__(self) -> None:
        seeds = {c.evaluation.seeds for c in self.candidates}
        if len(seeds) > 1:  # a comparison on different episodes would compare luck
            raise ValueError(f"candidates of one task were evaluated on different seeds: {seeds}")

    def record(self) -> dict[str, Any]:
        """The metadata.json fields of the choice."""
        return {
            "candidates": {c.backend: c.to_dict() for c in self.candidates},
            "chosen": self.chosen.backend,
            "choice_reason": self.reason,
        }


def evaluate_candidate(
    backend: str, policy: Policy, spec: TaskSpec, episodes: int, seed: int, threshold: float
) -> Candidate:
    """Score one candidate on the evaluation seeds of `seed` and gate it."""
    result = evaluate(policy, spec, episodes, seed)
    return Candidate(backend, result, gate(result, threshold))


def scripted_candidate(backend: str, spec: TaskSpec, episodes: int, seed: int, threshold: float) -> Candidate:
    """The untrained alternative (`scripted_alternative`) evaluated and gated."""
    scripted = get_backend(backend)
    scripted.check(spec, {})
    return evaluate_candidate(backend, scripted.load("", spec, None), spec, episodes, seed, threshold)


def keep_scripted(scripted: Candidate) -> Choice:
    """The scripted candidate passed the gate, so nothing was trained."""
    reason = (
        f"{scripted.backend} passes the gate ({scripted.decision.reason}): kept without training "
        "(train-experts --force-train trains and compares anyway)"
    )
    return Choice(scripted, (scripted,), reason)


def choose(trained: Candidate, scripted: Candidate) -> Choice:
    """Keep the higher normalised score over the same episodes; a tie keeps the scripted policy,
    which runs no network."""
    t, s = trained.evaluation.normalised, scripted.evaluation.normalised
    if t > s:
        winner = trained
        reason = f"{trained.backend} scores {t:.3f} > {scripted.backend} {s:.3f}"
    else:
        winner = scripted
        reason = f"{scripted.backend} scores {s:.3f} >= {trained.backend} {t:.3f}"
    episodes = winner.evaluation.episodes
    return Choice(winner, (scripted, trained), f"{reason} (normalised, same {episodes} evaluation seeds)")
