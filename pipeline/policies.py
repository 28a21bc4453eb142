"""The policy interface rollout and evaluation use, and the policies that need no training.

A policy is anything with `reset(env, seed)` and `act(observation, info)`; it never sees
storage (the recorder owns that, as in Minari). Trained experts from `experts/` implement the
same interface, so rollout does not care where actions come from.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from pipeline.errors import PipelineError
from pipeline.registry import TaskSpec

POLICY_KINDS = ("expert", "scripted", "random")


class EpisodeFailed(Exception):
    """The policy gave up on this episode (e.g. the BabyAI bot found no plan); it is dropped."""


class Policy(Protocol):
    """What rollout needs from a policy."""

    name: str

    def reset(self, env: gym.Env, seed: int) -> None:
        """Start an episode; `env` is the env being recorded, already reset."""

    def act(self, observation: Any, info: dict[str, Any]) -> Any:
        """The action for the observation the env just returned."""

    def provenance(self) -> dict[str, Any]:
        """What produced the actions: recorded in the manifest and the dataset card."""


class RandomPolicy:
    """Uniform random actions, seeded per episode so an episode replays identically."""

    name = "random"

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space

    def reset(self, env: gym.Env, seed: int) -> None:
        self.action_space.seed(seed)

    def act(self, observation: Any, info: dict[str, Any]) -> Any:
        return self.action_space.sample()

    def provenance(self) -> dict[str, Any]:
        return {"policy": self.name}


class BabyAIBotPolicy:
    """minigrid's BabyAI bot, the expert JAT recorded BabyAI with; it plans from the env state."""

    name = "babyai-bot"

    def __init__(self) -> None:
        from minigrid.utils.baby_ai_bot import BabyAIBot

        self._bot_class = BabyAIBot
        self._bot: Any = None

    def reset(self, env: gym.Env, seed: int) -> None:
        self._bot = self._bot_class(env.unwrapped)

    def act(self, observation: Any, info: dict[str, Any]) -> int:
        try:
            return int(self._bot.replan())
        except (AssertionError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise EpisodeFailed(f"bot error: {exc}") from exc

    def provenance(self) -> dict[str, Any]:
        return {"policy": self.name, "minigrid": version("minigrid")}


class MetaWorldScriptedPolicy:
    """Meta-World's hand-written policy for the task; it reads the goal from the full observation."""

    name = "metaworld-scripted"

    def __init__(self, env_name: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        if env_name not in ENV_POLICY_MAP:
            raise PipelineError(f"Meta-World ships no scripted policy for {env_name!r}")
        self.env_name = env_name
        self._policy = ENV_POLICY_MAP[env_name]()

    def reset(self, env: gym.Env, seed: int) -> None:
        pass

    def act(self, observation: Any, info: dict[str, Any]) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._policy.get_action(info["full_observation"])

    def provenance(self) -> dict[str, Any]:
        return {"policy": self.name, "env_name": self.env_name, "metaworld": version("metaworld")}


def scripted_available(spec: TaskSpec) -> bool:
    return spec.suite in ("babyai", "metaworld")


def _stored_expert(spec: TaskSpec, experts_dir: str | None, allow_weak: bool) -> dict[str, Any] | None:
    """The metadata of the expert rollout may use for `spec`, None to fall back to the bot/scripted one.

    Refuses (PipelineError) a missing expert where no fallback exists, and a rejected or
    unevaluated one unless `allow_weak`.
    """
    metadata = None
    if experts_dir:
        from experts.store import ExpertStore  # experts/ imports this module: import it lazily

        metadata = ExpertStore(experts_dir).read_metadata(spec.base_config)
    if metadata is None:
        if scripted_available(spec):
            return None
        where = f" in {experts_dir}" if experts_dir else " (no --experts-dir given)"
        raise PipelineError(
            f"no trained expert for {spec.base_config}{where}: train one with "
            f"`pipeline train-experts --tasks {spec.base_config} --out EXPERTS_DIR` and pass "
            "--experts-dir EXPERTS_DIR, or use --policy random"
        )
    status = metadata.get("status")
    if status != "accepted" and not allow_weak:
        reason = (metadata.get("gate") or {}).get("reason", "it was never evaluated")
        fallback = ", or --policy scripted" if scripted_available(spec) else ""
        raise PipelineError(
            f"the expert for {spec.base_config} in {experts_dir} is {status}: {reason}; train it further "
            f"(`pipeline train-experts --resume`), or pass --allow-weak to record it anyway{fallback}"
        )
    return metadata


def check_policy(kind: str, spec: TaskSpec, experts_dir: str | None, allow_weak: bool = False) -> None:
    """Fail before any work when `kind` cannot act in `spec`'s env."""
    if kind not in POLICY_KINDS:
        raise PipelineError(f"unknown policy {kind!r}; choose one of {', '.join(POLICY_KINDS)}")
    if kind == "scripted" and not scripted_available(spec):
        raise PipelineError(
            f"no scripted policy for {spec.config}: scripted experts exist for BabyAI (bot) and "
            "Meta-World only; use --policy random, or --policy expert with a trained expert"
        )
    if kind == "expert":
        _stored_expert(spec, experts_dir, allow_weak)


def history_snapshots(spec: TaskSpec, experts_dir: str | None) -> list[int]:
    """Training steps of the stored expert's learning-history snapshots (refused when there are < 2).

    A learning history is every stage of one learner, weak ones included, so the gate does not
    apply; bots and scripted policies have none.
    """
    if not experts_dir:
        raise PipelineError(
            "--learning-history records an expert's snapshots: pass --experts-dir EXPERTS_DIR "
            "written by `pipeline train-experts`"
        )
    from experts.store import ExpertStore

    store = ExpertStore(experts_dir)
    metadata = store.read_metadata(spec.base_config)
    if metadata is None or not metadata.get("trained"):
        what = "no expert" if metadata is None else f"a {metadata.get('backend')} expert (never trained)"
        raise PipelineError(
            f"{experts_dir} holds {what} for {spec.base_config}, so there is no learning history: train "
            f"one with `pipeline train-experts --tasks {spec.base_config} --out {experts_dir}`"
        )
    steps = store.history_steps(spec.base_config)
    if len(steps) < 2:
        raise PipelineError(
            f"the expert for {spec.base_config} in {experts_dir} kept {len(steps)} learning-history "
            "snapshot(s), a history needs 2 or more: retrain it with `pipeline train-experts --overwrite "
            "--history-every N` (default: expert.steps / expert.history_snapshots)"
        )
    return steps


def make_policy(
    kind: str,
    spec: TaskSpec,
    env: gym.Env,
    experts_dir: str | None = None,
    allow_weak: bool = False,
    step: int | None = None,
) -> Policy:
    """Build the policy `kind` for a task (checked first by `check_policy`).

    "expert" loads the trained expert from `experts_dir` when one is stored (accepted by the
    gate, or any with `allow_weak`); BabyAI and Meta-World fall back to their bot/scripted expert.
    With `step`, the expert's learning-history snapshot at that training step (no gate).
    """
    if step is not None:
        from experts.store import ExpertStore

        return ExpertStore(experts_dir or "").load_policy(spec, step=step)
    check_policy(kind, spec, experts_dir, allow_weak)
    if kind == "random":
        return RandomPolicy(env.action_space)
    if kind == "expert":
        metadata = _stored_expert(spec, experts_dir, allow_weak)
        if metadata is not None:
            from experts.store import ExpertStore

            return ExpertStore(experts_dir or "").load_policy(spec, metadata)
    if spec.suite == "babyai":
        return BabyAIBotPolicy()
    return MetaWorldScriptedPolicy(spec.env_name or "")
