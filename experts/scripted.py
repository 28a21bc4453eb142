"""Experts that need no training, registered as backends so every suite has an expert.

BabyAI: minigrid's BabyAI bot (JAT recorded BabyAI with it). Meta-World: the package's
hand-written per-task policies. "Training" one only records its metadata; the stage then
evaluates and gates it like any trained expert, so rollout treats all experts the same way.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from experts.base import TrainJob, TrainOutcome
from experts.metadata import ExpertMetadata
from pipeline.errors import PipelineError
from pipeline.suites import get_suite
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.suites.metaworld import MetaWorldScriptedPolicy
from pipeline.tasks.policies import Policy
from pipeline.tasks.registry import TaskSpec


class BabyAIBotBackend:
    name = "babyai-bot"
    trainable = False

    def check(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> None:
        if get_suite(spec.suite).scripted_expert != self.name:
            raise PipelineError(f"the babyai-bot expert plays BabyAI tasks only, not {spec.config}")

    def hyperparameter_keys(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> frozenset[str]:
        return frozenset()  # nothing to tune; the stage does not apply --set to untrained backends

    def train(self, job: TrainJob) -> TrainOutcome:
        return TrainOutcome(steps=0, algo="BabyAI bot (minigrid)", hyperparameters={})

    def load(self, model_dir: str, spec: TaskSpec, metadata: ExpertMetadata | None) -> Policy:
        return BabyAIBotPolicy.for_task(spec)

    def versions(self) -> dict[str, str]:
        return {"minigrid": version("minigrid")}


class MetaWorldScriptedBackend:
    name = "metaworld-scripted"
    trainable = False

    def check(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> None:
        if get_suite(spec.suite).scripted_expert != self.name:
            raise PipelineError(
                f"the metaworld-scripted expert plays Meta-World tasks only, not {spec.config}"
            )
        from metaworld.policies import ENV_POLICY_MAP

        if spec.env_name not in ENV_POLICY_MAP:
            raise PipelineError(f"Meta-World ships no scripted policy for {spec.env_name!r} ({spec.config})")

    def hyperparameter_keys(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> frozenset[str]:
        return frozenset()  # nothing to tune; the stage does not apply --set to untrained backends

    def train(self, job: TrainJob) -> TrainOutcome:
        return TrainOutcome(steps=0, algo="Meta-World scripted policy", hyperparameters={})

    def load(self, model_dir: str, spec: TaskSpec, metadata: ExpertMetadata | None) -> Policy:
        choice = metadata.choice_provenance() if metadata else {}
        if choice:
            return ChosenMetaWorldScriptedPolicy(spec.env_name or "", choice)
        return MetaWorldScriptedPolicy(spec.env_name or "")

    def versions(self) -> dict[str, str]:
        return {"metaworld": version("metaworld")}


class ChosenMetaWorldScriptedPolicy(MetaWorldScriptedPolicy):
    """The scripted policy as the expert `train-experts` chose for a task: it acts the same, and its
    provenance also names the choice and every candidate's score (`experts.candidates`)."""

    def __init__(self, env_name: str, choice: dict[str, Any]) -> None:
        super().__init__(env_name)
        self.choice = choice

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), **self.choice}
