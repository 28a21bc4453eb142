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
from pipeline.sections import RolloutSection

POLICY_KINDS = ("expert", "scripted", "random")


class EpisodeFailed(Exception):
    """The policy gave up on this episode (e.g. the BabyAI bot found no plan); it is dropped."""


class PolicyTimeout(EpisodeFailed):
    """One policy call ran past its time budget; the episode is dropped with the reason."""


_ROLLOUT = RolloutSection()  # the bot's bounds when none are given: the registry's declared defaults


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

    def __init__(self, items: list[Any], max_pushes: int = _ROLLOUT.bot_replan_max_subgoals) -> None:
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
        replan_timeout_s: float = _ROLLOUT.bot_replan_timeout_s,
        replan_max_subgoals: int = _ROLLOUT.bot_replan_max_subgoals,
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

    @classmethod
    def for_task(cls, spec: TaskSpec) -> BabyAIBotPolicy:
        """The bot with the task's bounds from env_configs/, whichever way it is asked for (scripted
        policy or stored expert): the same episodes are kept or dropped either way."""
        return cls(spec.rollout.bot_replan_timeout_s, spec.rollout.bot_replan_max_subgoals)

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
