"""`pipeline evaluate-experts`: re-evaluate stored experts and re-apply the quality gate.

Each expert plays N episodes on fresh seeds; its mean/std return, success rate (where the env
reports one) and JAT-normalised score go into its metadata.json with the gate's verdict, which
is what `pipeline rollout --policy expert` checks. Training already evaluates once; this stage
is for a different threshold, more episodes, or experts trained elsewhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from experts.evaluation import evaluate, gate, judged
from experts.report import budget_of, write_suite_reports
from experts.store import ExpertStore
from experts.training import FAILED, ExpertResult
from pipeline.configs.experts import EvaluateExpertsConfig
from pipeline.errors import PipelineError
from pipeline.format.schema import TMP_DIR
from pipeline.tasks.registry import resolve_tasks

log = logging.getLogger(__name__)


@dataclass
class EvaluateExpertsSummary:
    experts_dir: str
    results: list[ExpertResult]
    reports: dict[str, list[str]]
    seconds: float

    @property
    def failed(self) -> list[ExpertResult]:
        return [r for r in self.results if r.status == FAILED]


def evaluate_experts(config: EvaluateExpertsConfig) -> EvaluateExpertsSummary:
    """Evaluate and gate the stored experts of the chosen tasks; missing or unloadable ones are failures."""
    specs = resolve_tasks(config.suite, list(config.tasks) or None)
    store = ExpertStore(config.experts_dir)
    if store.location.is_empty():
        raise PipelineError(
            f"no experts in {store.uri}: train some with `pipeline train-experts --out {store.uri}`"
        )
    started = time.monotonic()
    results: list[ExpertResult] = []
    for spec in specs:
        try:
            metadata = store.read_metadata(spec.config)
            if metadata is None:
                raise PipelineError(
                    f"no expert for {spec.config} in {store.uri}: train it with `pipeline train-experts`"
                )
            policy = store.load_policy(spec, metadata)
            episodes = config.episodes or spec.expert.eval_episodes
            threshold = config.threshold if config.threshold is not None else spec.expert.threshold
            evaluation = evaluate(policy, spec, episodes, config.seed)
            decision = gate(evaluation, threshold)
        except PipelineError as exc:
            results.append(ExpertResult(spec.config, "?", FAILED, error=str(exc)))
            continue
        metadata = judged(metadata, evaluation, decision)
        store.write_metadata(spec.config, metadata)
        log.info("%s: %s (%s)", spec.config, decision.status, decision.reason)
        estimate = budget_of(store, metadata)
        results.append(
            ExpertResult(
                spec.config,
                metadata.backend,
                decision.status,
                metadata.steps_trained,
                metadata.wall_time_s,
                evaluation.to_dict(),
                budget=estimate.short() if estimate else "",
            )
        )
    reports = write_suite_reports(store, [s.suite for s in specs])
    store.location.delete(TMP_DIR)
    return EvaluateExpertsSummary(store.uri, results, reports, time.monotonic() - started)
