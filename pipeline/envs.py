"""Environment construction, one function for every stage.

Expert training, rollout and model evaluation all build their envs here, so the observations
an expert learns from are the observations stored and the ones the model is scored on.
Every env returns observations already in JAT's stored form:

- Atari: uint8 (84, 84, 4), the 4 most recent grey frames after skip-4 + max-pool, oldest first;
- BabyAI: {"text_observations": mission, "discrete_observations": int64[148]};
- Meta-World / MuJoCo: float32 vectors (Meta-World with the goal zeroed, as in JAT's data).
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from pipeline import noise
from pipeline.errors import PipelineError
from pipeline.registry import TaskSpec

_REGISTERED: set[str] = set()


def _register(suite: str) -> None:
    """Import the package that registers a suite's env ids, once per process."""
    if suite in _REGISTERED:
        return
    if suite == "atari":
        import ale_py

        gym.register_envs(ale_py)
    elif suite == "babyai":
        import minigrid

        gym.register_envs(minigrid)
        noise.quiet_minigrid()  # its levels print each rejected room layout
    elif suite == "metaworld":
        import metaworld

        gym.register_envs(metaworld)
    _REGISTERED.add(suite)


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


class BabyAIObservation(gym.ObservationWrapper):
    """Mission text + 148 ints ([direction] + flattened 7x7x3 view), JAT's BabyAI observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Dict(
            {
                "text_observations": gym.spaces.Text(max_length=512),
                "discrete_observations": gym.spaces.Box(0, 255, (148,), np.int64),
            }
        )

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        ints = np.empty(148, dtype=np.int64)
        ints[0] = observation["direction"]
        ints[1:] = observation["image"].reshape(-1)
        return {"text_observations": observation["mission"], "discrete_observations": ints}


class GoalHiddenObservation(gym.Wrapper):
    """Zero Meta-World's goal (obs[36:39]) in what is stored, as JAT's v2 fork did.

    Scripted experts need the goal to act, so the full observation is passed on in
    `info["full_observation"]`; only the stored copy hides it.
    """

    GOAL = slice(36, 39)

    def __init__(self, env: gym.Env, hide_goal: bool) -> None:
        super().__init__(env)
        self.hide_goal = hide_goal
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float32)

    def _split(self, obs: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        info = dict(info)
        info["full_observation"] = obs
        stored = np.asarray(obs, dtype=np.float32).copy()
        if self.hide_goal:
            stored[self.GOAL] = 0.0
        return stored, info

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        if kwargs.get("seed") is not None:
            # MT1 draws the episode's task (goal) *before* reset reseeds the env, from the env's
            # previous random state: seed it first, so an episode depends on its seed alone.
            self.env.unwrapped.np_random = gym.utils.seeding.np_random(kwargs["seed"])[0]
        obs, info = self.env.reset(**kwargs)
        return self._split(obs, info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        stored, info = self._split(obs, info)
        return stored, reward, terminated, truncated, info


def make_env(spec: TaskSpec, *, max_episode_steps: int | None = None) -> gym.Env:
    """Build the env of a task with the observations JAT stored.

    `max_episode_steps` overrides the registry's horizon (Meta-World: 100 by default, JAT's).
    """
    _register(spec.suite)
    warnings.filterwarnings("ignore", module="gymnasium.utils.passive_env_checker")
    # The registry picks env versions on purpose (MuJoCo v4 where it keeps JAT's layout): gymnasium's
    # "is out of date" notice, once per env id and process, would be noise in every actor's log.
    warnings.filterwarnings(
        "ignore", message=r".*The environment \S+ is out of date", category=DeprecationWarning
    )
    try:
        if spec.suite == "atari":
            from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

            w = spec.env.wrappers
            noise.quiet_ale()  # its emulator prints a banner on every ROM load
            if spec.env.atari_semantics == "envpool":
                from pipeline.atari_envpool import EnvpoolAtari

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
        if spec.suite == "babyai":
            kwargs = {**spec.make_kwargs, **({"max_steps": max_episode_steps} if max_episode_steps else {})}
            return BabyAIObservation(gym.make(spec.env_id, **kwargs))
        if spec.suite == "metaworld":
            horizon = max_episode_steps or spec.max_episode_steps or 100
            env = gym.make(spec.env_id, env_name=spec.env_name, max_episode_steps=horizon, **spec.make_kwargs)
            return GoalHiddenObservation(env, hide_goal=spec.env.goal_hidden)
        kwargs = dict(spec.make_kwargs)
        if max_episode_steps:
            kwargs["max_episode_steps"] = max_episode_steps
        env = gym.make(spec.env_id, **kwargs)
        if env.observation_space.shape != spec.observation.shape:  # the registry holds JAT's size
            env.close()
            raise PipelineError(
                f"{spec.env_id} observes shape {list(env.observation_space.shape)}, not the "
                f"{list(spec.observation.shape)} of {spec.config} in env_configs/{spec.suite}.yaml: "
                f"use the env version and make_kwargs that give JAT's layout ({spec.jat_env_id})"
            )
        return gym.wrappers.TransformObservation(
            env,
            lambda o: np.asarray(o, dtype=np.float32),
            gym.spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float32),
        )
    except gym.error.Error as exc:
        raise PipelineError(
            f"cannot build env {spec.env_id!r} for {spec.config}: {exc} "
            "(check the installed gymnasium/ale-py/minigrid/metaworld versions: `make install`)"
        ) from exc


def step_success(spec: TaskSpec, terminated: bool, reward: float, info: dict[str, Any]) -> bool | None:
    """Did this step succeed? BabyAI: the goal was reached (positive reward on termination);
    Meta-World: the env's `success` flag; elsewhere unknown (None). Shared by rollout, expert
    evaluation and model evaluation so all three count success the same way."""
    if spec.suite == "babyai":
        return bool(terminated and reward > 0)
    if "success" in info:
        return bool(info["success"])
    return None
