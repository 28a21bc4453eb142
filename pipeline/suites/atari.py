"""Atari (57 games of the ALE): frame stacks stored as PNG images, discrete actions.

Observations are JAT's: uint8 (84, 84, 4), the 4 most recent grey frames after skip-4 + max-pool,
oldest first. By default with envpool's semantics (`env.atari_semantics: envpool`,
`pipeline.suites.atari_envpool`), which JAT's data and its released Sample Factory experts came
from; `gym` gives gymnasium's AtariPreprocessing instead.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from pipeline.runtime import noise
from pipeline.suites.base import Grab, Suite
from pipeline.suites.layouts import IMAGE
from pipeline.tasks.registry import TaskSpec

SCALE = 2
"""Atari frames are drawn at twice their 84 pixels."""


class ChannelsLastFrames(gym.ObservationWrapper):
    """(stack, 84, 84) -> (84, 84, stack): JAT stores the frame stack as image channels."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        n, h, w = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (h, w, n), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(np.asarray(observation), 0, -1))


class FastSeededReset(gym.Wrapper):
    """Atari `reset(seed=...)` without reloading the ROM: 0.016 s instead of 0.2 s per episode.

    Rollout seeds every episode. ale-py then reloads the ROM only to re-seed ALE's own random
    generator, which drives sticky actions and nothing else; with sticky actions off (JAT's
    NoFrameskip-v4 semantics) this restores the emulator state saved right after the first
    load instead, and seeds the env's numpy generator (no-op starts) exactly as ale-py does.
    `tests/test_envs.py` checks that episodes are identical either way. A soft `reset_game`
    alone is not enough: some games (Seaquest) keep state across it.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        ale_env = env.unwrapped
        self._enabled = float(ale_env.ale.getFloat("repeat_action_probability")) == 0.0
        self._loaded: Any = None  # emulator state right after the ROM load

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        ale_env = self.env.unwrapped
        if seed is None or not self._enabled:
            return self.env.reset(seed=seed, options=options)
        ale_env.seed_game(seed)
        if self._loaded is None:
            ale_env.load_game()
            self._loaded = ale_env.ale.cloneState(include_rng=True)
        else:
            ale_env.ale.restoreState(self._loaded)
        return self.env.reset(options=options)


def _frame(_env: object, observation: object) -> np.ndarray:
    newest = np.asarray(observation)[..., -1]
    big = newest.repeat(SCALE, axis=0).repeat(SCALE, axis=1)
    return np.stack([big] * 3, axis=-1)


class Atari(Suite):
    name = "atari"
    title = "Atari"
    layout = IMAGE
    fps = 15.0
    needs_gl = False
    packages = ("ale-py",)
    human_scores = True
    context_steps = 32
    context_option = "atari_context_steps"  # --atari-context
    jat_eval_context_steps = 16

    def register_envs(self) -> None:
        import ale_py

        gym.register_envs(ale_py)

    def make_env(self, spec: TaskSpec, max_episode_steps: int | None) -> gym.Env:
        from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

        w = spec.env.wrappers
        noise.quiet_ale()  # its emulator prints a banner on every ROM load
        if spec.env.atari_semantics == "envpool":
            from pipeline.suites.atari_envpool import EnvpoolAtari

            # envpool counts its limit in agent steps; ALE's own frame limit would end games earlier
            ale_env = gym.make(spec.env_id, **{**spec.make_kwargs, "max_num_frames_per_episode": 0})
            return EnvpoolAtari(
                ale_env,
                noop_max=w.noop_max,
                frame_skip=w.frame_skip,
                screen_size=w.screen_size,
                frame_stack=w.frame_stack,
                step_limit=max_episode_steps or w.step_limit,
            )
        env = FastSeededReset(gym.make(spec.env_id, **spec.make_kwargs))
        env = AtariPreprocessing(
            env,
            noop_max=w.noop_max,
            frame_skip=w.frame_skip,
            screen_size=w.screen_size,
            terminal_on_life_loss=w.terminal_on_life_loss,
            grayscale_obs=True,
            scale_obs=False,
        )
        env = FrameStackObservation(env, w.frame_stack)
        return ChannelsLastFrames(env)

    def atari_semantics(self, spec: TaskSpec) -> str | None:
        return spec.env.atari_semantics

    def frame_grabber(self, spec: TaskSpec, env: Any, size: int) -> Grab:
        return _frame


SUITE = Atari()
