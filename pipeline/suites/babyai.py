"""BabyAI (39 minigrid levels): a mission text and 148 integers per step, discrete actions.

Observations are JAT's: {"text_observations": mission, "discrete_observations": int64[148]}
([direction] + the flattened 7x7x3 view). The scripted expert is minigrid's BabyAI bot, which JAT
recorded BabyAI with; success is reaching the goal, the only step with a positive reward.
"""

from __future__ import annotations

import gc
import time
from importlib.metadata import version
from typing import Any

import gymnasium as gym
import numpy as np

from pipeline.format.columns import DISCRETE_OBSERVATIONS, TEXT_OBSERVATIONS
from pipeline.runtime import noise
from pipeline.suites.base import Grab, Suite
from pipeline.suites.drawing import with_text_above
from pipeline.suites.layouts import MISSION
from pipeline.tasks.policies import EpisodeFailed, PolicyTimeout
from pipeline.tasks.registry import TaskSpec
from pipeline.tasks.sections import RolloutSection

TILE = 16
"""Pixels per grid cell when drawn: a 22x22 level is 352 px wide (at 8 its objects were specks)."""
_ROLLOUT = RolloutSection()  # the bot's bounds when none are given: the registry's declared defaults


class BabyAIObservation(gym.ObservationWrapper):
    """Mission text + 148 ints ([direction] + flattened 7x7x3 view), JAT's BabyAI observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Dict(
            {
                TEXT_OBSERVATIONS: gym.spaces.Text(max_length=512),
                DISCRETE_OBSERVATIONS: gym.spaces.Box(0, 255, (148,), np.int64),
            }
        )

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        ints = np.empty(148, dtype=np.int64)
        ints[0] = observation["direction"]
        ints[1:] = observation["image"].reshape(-1)
        return {TEXT_OBSERVATIONS: observation["mission"], DISCRETE_OBSERVATIONS: ints}


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


def _frame(env: Any, _observation: object) -> np.ndarray:
    grid = env.unwrapped.get_frame(highlight=False, tile_size=TILE)
    return with_text_above(grid, str(env.unwrapped.mission))


class BabyAI(Suite):
    name = "babyai"
    title = "BabyAI"
    layout = MISSION
    fps = 4.0
    needs_gl = False
    packages = ("minigrid",)
    scripted_expert = "babyai-bot"
    success_from_rewards = True

    def register_envs(self) -> None:
        import minigrid

        gym.register_envs(minigrid)
        noise.quiet_minigrid()  # its levels print each rejected room layout

    def make_env(self, spec: TaskSpec, max_episode_steps: int | None) -> gym.Env:
        kwargs = {**spec.make_kwargs, **({"max_steps": max_episode_steps} if max_episode_steps else {})}
        return BabyAIObservation(gym.make(spec.env_id, **kwargs))

    def step_success(
        self, spec: TaskSpec, terminated: bool, reward: float, info: dict[str, Any]
    ) -> bool | None:
        return bool(terminated and reward > 0)

    def scripted_policy(self, spec: TaskSpec) -> BabyAIBotPolicy:
        return BabyAIBotPolicy.for_task(spec)

    def frame_grabber(self, spec: TaskSpec, env: Any, size: int) -> Grab:
        return _frame


SUITE = BabyAI()
