"""The policy interface rollout and evaluation use, and the policies that need no training.

A policy is anything with `reset(env, seed)` and `act(observation, info)`; it never sees
storage (the recorder owns that, as in Minari). Trained experts from `experts/` implement the
same interface, so rollout does not care where actions come from.
"""

from __future__ import annotations

import gc
import time
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


class PolicyTimeout(EpisodeFailed):
    """One policy call ran past its time budget; the episode is dropped with the reason."""


# JAT's bound on one BabyAI bot replan (data/envs/babyai/create_babyai_dataset.py); the registry's
# `rollout.bot_replan_timeout_s` overrides it for rollouts.
DEFAULT_BOT_REPLAN_TIMEOUT_S = 0.02
# Subgoals one replan may push: a healthy replan pushes at most 8 (39 tasks x 10 episodes measured),
# a runaway one hundreds within milliseconds. Unlike time, the count depends on the env state alone,
# so which episodes are dropped does not depend on the machine's load (`rollout.bot_replan_max_subgoals`).
DEFAULT_BOT_REPLAN_MAX_SUBGOALS = 100


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


class _ReplanOverrun(BaseException):
    """Raised inside the bot's replan loop; a BaseException so no `except Exception` in minigrid eats it."""


class _BudgetedStack(list):
    """The bot's subgoal stack, refusing to grow once the running replan has used up its CPU budget.

    On some seeds minigrid's `BabyAIBot.replan` never returns: its `while self.stack` loop keeps
    pushing subgoals (0.4-0.7 GB after a minute, 1 GB+ later). Every turn of that loop that does
    not yield an action pushes or pops a subgoal, and pops alone run out, so checking the budget
    on each push interrupts any such loop within one turn of the deadline, in whatever thread or
    process (Ray actor) the bot runs. No signal is needed: SIGALRM works in a main thread only.
    """

    __slots__ = ("deadline", "max_pushes", "pushes")

    def __init__(self, items: list[Any], max_pushes: int = DEFAULT_BOT_REPLAN_MAX_SUBGOALS) -> None:
        super().__init__(items)
        self.deadline = float("inf")
        self.pushes = 0
        self.max_pushes = max_pushes

    def append(self, item: Any) -> None:
        self.pushes += 1
        if self.pushes > self.max_pushes:
            raise _ReplanOverrun("subgoals")
        if time.thread_time() > self.deadline:
            raise _ReplanOverrun("time")
        super().append(item)


class BabyAIBotPolicy:
    """minigrid's BabyAI bot, the expert JAT recorded BabyAI with; it plans from the env state.

    On some states the bot's replan never returns. Each replan may push `replan_max_subgoals`
    subgoals (a healthy one pushes at most 8); past that the episode is dropped (`PolicyTimeout`).
    JAT bounded wall-clock time (0.02 s), which makes the dropped episodes depend on the machine's
    load; a count depends on the env state alone, so an episode still depends on its seed alone.
    Behind it, a looser CPU-time budget (`replan_timeout_s`, the garbage collector paused) catches a
    loop that would not push.
    """

    name = "babyai-bot"

    def __init__(
        self,
        replan_timeout_s: float = DEFAULT_BOT_REPLAN_TIMEOUT_S,
        replan_max_subgoals: int = DEFAULT_BOT_REPLAN_MAX_SUBGOALS,
    ) -> None:
        from minigrid.utils.baby_ai_bot import BabyAIBot, DisappearedBoxError

        if not replan_timeout_s > 0:
            raise ValueError(
                f"replan_timeout_s must be a positive number of seconds, got {replan_timeout_s!r}"
            )
        self._bot_class = BabyAIBot
        self._bot_errors = (AssertionError, ValueError, KeyError, IndexError, TypeError, DisappearedBoxError)
        self.replan_timeout_s = float(replan_timeout_s)
        self.replan_max_subgoals = int(replan_max_subgoals)
        self._bot: Any = None
        self._stack: _BudgetedStack = _BudgetedStack([])
        self._step = 0

    def reset(self, env: gym.Env, seed: int) -> None:
        self._bot = self._bot_class(env.unwrapped)
        self._stack = self._bot.stack = _BudgetedStack(self._bot.stack, self.replan_max_subgoals)
        self._step = 0

    def act(self, observation: Any, info: dict[str, Any]) -> int:
        step, self._step = self._step, self._step + 1
        gc_was_enabled = gc.isenabled()
        gc.disable()
        start = time.thread_time()
        self._stack.deadline = start + self.replan_timeout_s
        self._stack.pushes = 0
        try:
            action = self._bot.replan()
        except _ReplanOverrun as overrun:
            if overrun.args == ("subgoals",):
                raise PolicyTimeout(
                    f"policy step limit: replan pushed > {self.replan_max_subgoals} subgoals at step {step} "
                    "(minigrid's bot loops on this state)"
                ) from None
            raise self._timeout(step) from None
        except self._bot_errors as exc:
            raise EpisodeFailed(f"bot error: {exc}") from exc
        finally:
            elapsed = time.thread_time() - start
            if gc_was_enabled:
                gc.enable()
        if elapsed > self.replan_timeout_s:
            raise self._timeout(step)
        if self._bot.stack is not self._stack:
            raise RuntimeError(
                "minigrid's BabyAIBot replaced its subgoal stack: its replan is no longer bounded"
            )
        return int(action)

    def _timeout(self, step: int) -> PolicyTimeout:
        return PolicyTimeout(
            f"policy step timeout: replan took > {self.replan_timeout_s:g} s (CPU) at step {step}"
        )

    def provenance(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "minigrid": version("minigrid"),
            "replan_timeout_s": self.replan_timeout_s,
            "replan_max_subgoals": self.replan_max_subgoals,
        }


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

    A stored Meta-World expert may be the scripted policy or a trained network, whichever
    `train-experts` kept (`chosen` in its metadata); its `status` is the kept one's. A store
    without an entry for the task falls back to the bot/scripted expert. Refuses (PipelineError) a
    missing expert where no fallback exists, and a rejected or unevaluated one unless `allow_weak`.
    """
    from experts.base import ExpertStatus  # experts/ imports this module: import it lazily

    metadata = None
    if experts_dir:
        from experts.store import ExpertStore

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
    if status != ExpertStatus.ACCEPTED and not allow_weak:
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

    "expert" loads the stored expert from `experts_dir` when there is one (accepted by the gate,
    or any with `allow_weak`): for Meta-World, the candidate `train-experts` kept, its trained
    network or its scripted policy (`ExpertStore.load_policy`); without a stored one BabyAI and
    Meta-World fall back to their bot/scripted expert.
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
        return BabyAIBotPolicy(
            spec.rollout.get("bot_replan_timeout_s", DEFAULT_BOT_REPLAN_TIMEOUT_S),
            spec.rollout.get("bot_replan_max_subgoals", DEFAULT_BOT_REPLAN_MAX_SUBGOALS),
        )
    return MetaWorldScriptedPolicy(spec.env_name or "")
