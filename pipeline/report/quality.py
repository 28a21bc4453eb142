"""How good each config's data is against JAT's experts: the rows of `pipeline report` and of the
dataset card's "Quality against JAT's experts" section (one implementation for both).

Per config, from the manifest alone (no shard is read): episodes per split, mean return, success
rate where the suite defines success (BabyAI, Meta-World; MuJoCo and Atari record none), and the
expert-normalised score (mean - random) / (expert - random) with JAT's reference returns from the
registry (variants like `-top80`/`-history` use their task's). The score is over all episodes, train
and test alike: both come from the same policy, and more episodes give a tighter interval. Its 95 %
interval is a percentile bootstrap over episodes with `pipeline.model.metrics` (the rliable method
`pipeline evaluate` uses), deterministic for a given seed. JAT kept experts scoring at least 0.9;
a config below that bar is flagged. Where JAT's expert does not beat random (Bowling, Venture) the
score is undefined and left empty, as `pipeline evaluate` leaves it out.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.checks.integrity import check_files, unfinished_configs
from pipeline.configs.datasets import DEFAULT_BOOTSTRAP_REPS, ReportConfig
from pipeline.errors import PipelineError
from pipeline.format.manifest import Manifest, dataset_configs, read_manifest
from pipeline.format.schema import SPLITS
from pipeline.model.metrics import mean, normalised, stratified_bootstrap_ci
from pipeline.runtime.storage import Location, open_location
from pipeline.tasks.registry import get_task

log = logging.getLogger(__name__)

JAT_BAR = 0.9
"""JAT's bar: an expert (and so its data) counts as expert-level at 0.9 of JAT's expert score."""
CONFIDENCE = 0.95
_VERSION_KEYS = ("minigrid", "metaworld", "sample-factory", "stable-baselines3")


@dataclass(frozen=True)
class QualityRow:
    """One config's quality against JAT's expert, as the report and the card show it."""

    config: str
    suite: str
    train_episodes: int
    test_episodes: int
    mean_return: float | None
    """Mean episode return over all episodes; None without episodes."""
    success_rate: float | None
    """Share of successful episodes; None where the suite records no success."""
    expert_return: float
    """JAT's expert reference return for the task."""
    random_return: float
    """JAT's random-policy reference return for the task."""
    normalised: float | None
    """(mean - random) / (expert - random); None without episodes or when expert ≤ random."""
    ci: tuple[float, float] | None
    """95 % percentile-bootstrap interval of `normalised` over episodes."""
    policy_kind: str | None
    """The rollout's `--policy`: expert, scripted or random."""
    policy: str
    """What acted, for people: kind, policy, backend, training, evaluation, versions."""
    provenance: dict[str, Any]
    """The manifest's policy provenance, verbatim."""

    @property
    def episodes(self) -> int:
        return self.train_episodes + self.test_episodes

    @property
    def below_bar(self) -> bool | None:
        """True below JAT's 0.9 bar; None when the score is undefined."""
        return None if self.normalised is None else self.normalised < JAT_BAR

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "suite": self.suite,
            "episodes": {"train": self.train_episodes, "test": self.test_episodes},
            "mean_return": self.mean_return,
            "success_rate": self.success_rate,
            "reference": {"expert": self.expert_return, "random": self.random_return},
            "normalised_score": self.normalised,
            "ci95": list(self.ci) if self.ci else None,
            "below_bar": self.below_bar,
            "policy_kind": self.policy_kind,
            "policy": self.policy,
            "provenance": self.provenance,
        }


def describe_policy(plan: dict[str, Any], provenance: dict[str, Any]) -> str:
    """One line naming what acted: "scripted: babyai-bot (minigrid 3.2.0)",
    "expert: sample-factory, 1,000,000 steps trained, evaluated 0.95 (accepted)", "random"."""
    kind = plan.get("policy") or provenance.get("policy") or "unknown"
    parts: list[str] = []
    name = provenance.get("policy")
    if name and name != kind:
        parts.append(str(name))
    if provenance.get("backend"):
        parts.append(" ".join(str(provenance[k]) for k in ("backend", "algo") if provenance.get(k)))
    if isinstance(provenance.get("steps_trained"), int | float):
        parts.append(f"{int(provenance['steps_trained']):,} steps trained")
    evaluation = provenance.get("evaluation")
    if isinstance(evaluation, dict) and isinstance(evaluation.get("normalised"), int | float):
        episodes = evaluation.get("episodes")
        over = f" over {episodes} episodes" if episodes else ""
        status = f" ({provenance['status']})" if provenance.get("status") else ""
        parts.append(f"evaluated {evaluation['normalised']:.2f}{over}{status}")
    versions = [f"{k} {provenance[k]}" for k in _VERSION_KEYS if provenance.get(k)]
    if plan.get("history"):
        parts.append(f"learning history, {len(plan['history'].get('snapshots', []))} snapshots")
    if plan.get("min_return_fraction") is not None:
        parts.append(f"episodes scoring ≥ {plan['min_return_fraction']:g} kept")
    text = kind + (f": {', '.join(parts)}" if parts else "")
    return text + (f" ({', '.join(versions)})" if versions else "")


# The rollout re-renders the card after every config it commits, so one driver scores the same
# configs again and again; an interval is cached by the returns it came from (a few bytes each).
_CI_CACHE: dict[tuple[bytes, int, int], tuple[float, float]] = {}
_CI_CACHE_SIZE = 4096


def _bootstrap_ci(values: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    key = (hashlib.blake2b(values.tobytes(), digest_size=16).digest(), reps, seed)
    if key not in _CI_CACHE:
        if len(_CI_CACHE) >= _CI_CACHE_SIZE:
            _CI_CACHE.clear()
        _CI_CACHE[key] = stratified_bootstrap_ci(values[:, None], mean, reps, CONFIDENCE, seed)
    return _CI_CACHE[key]


def quality_row(manifest: Manifest, reps: int = DEFAULT_BOOTSTRAP_REPS, seed: int = 0) -> QualityRow:
    """One config's row from its manifest (the registry supplies JAT's reference returns)."""
    scores = get_task(manifest.config).scores
    episodes = {
        s: [e for shard in manifest.shards if shard.split == s for e in shard.episodes] for s in SPLITS
    }
    every = [e for s in SPLITS for e in episodes[s]]
    returns = [float(e.episode_return) for e in every]
    successes = [bool(e.success) for e in every if e.success is not None]
    per_episode = normalised(scores, returns) if returns else None
    score = ci = None
    if per_episode is not None:
        values = np.asarray(per_episode, dtype=np.float64)
        score = float(values.mean())
        ci = _bootstrap_ci(values, reps, seed)
        if not (math.isfinite(score) and all(math.isfinite(x) for x in ci)):
            score = ci = None
    return QualityRow(
        config=manifest.config,
        suite=manifest.suite,
        train_episodes=len(episodes["train"]),
        test_episodes=len(episodes["test"]),
        mean_return=float(np.mean(returns)) if returns else None,
        success_rate=float(np.mean(successes)) if successes else None,
        expert_return=scores.expert_mean,
        random_return=scores.random_mean,
        normalised=score,
        ci=ci,
        policy_kind=manifest.plan.get("policy"),
        policy=describe_policy(manifest.plan, manifest.provenance),
        provenance=manifest.provenance,
    )


def _configs(location: Location, requested: tuple[str, ...]) -> list[str]:
    """The configs to score, refusing a missing dataset or an unknown config by name."""
    try:
        missing = location.fs.get_file_info(location.root).type == pafs.FileType.NotFound
        available = [] if missing else dataset_configs(location)
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(f"cannot read {location.uri}: {exc} (check the path and credentials)") from exc
    if missing:
        raise PipelineError(
            f"{location.uri} does not exist: give the folder a `pipeline rollout --out` wrote"
        )
    if not available:
        raise PipelineError(
            f"{location.uri} holds no finished config (no meta/<config>/manifest.json): "
            f"record one with `pipeline rollout --out {location.uri}`"
        )
    for config in requested:
        if config not in available:
            close = difflib.get_close_matches(config, available, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise PipelineError(
                f"{location.uri} has no config {config!r}: {hint}it holds {', '.join(available)}"
            )
    return list(dict.fromkeys(requested)) or available


def dataset_quality(request: ReportConfig) -> list[QualityRow]:
    """A row per requested config of the dataset, in the order asked (default: sorted); the
    request's gate (`min_normalised`) is the caller's, applied to the rows with `below`."""
    location = open_location(request.data_dir)
    if location.exists(""):  # a config whose manifest was lost is damage, not an unknown config
        check_files(location, unfinished_configs(location, request.configs), "reported")
    configs = _configs(location, request.configs)
    check_files(location, configs, "reported")  # scores of damaged data would be claims about lost files
    rows = []
    for config in configs:
        rows.append(quality_row(read_manifest(location, config), request.bootstrap_reps, request.seed))
        log.debug("%s: normalised %s", config, rows[-1].normalised)
    return rows


def below(rows: list[QualityRow], threshold: float) -> list[QualityRow]:
    """Rows failing a quality gate: a score below `threshold`, or no episode at all.

    A score JAT's references leave undefined (expert ≤ random) cannot be judged and does not fail.
    """
    return [r for r in rows if r.episodes == 0 or (r.normalised is not None and r.normalised < threshold)]
