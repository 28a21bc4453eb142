"""A trained sample-factory expert acting on `pipeline.tasks.envs.make_env(spec)` observations.

Rollout, evaluation and the released-expert import load experts through this module; training is
`experts.sample_factory`. The network sees what sample-factory trained it on: images channels
first (`ChannelsFirst`), vectors as float32, actions from the task's space.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from typing import Any

import gymnasium as gym
import numpy as np

from experts import sf_compat
from experts.checkpoints import load_checkpoint
from pipeline.errors import PipelineError
from pipeline.tasks.registry import TaskSpec

sf_compat.apply()


class ChannelsFirst(gym.ObservationWrapper):
    """(84, 84, 4) -> (4, 84, 84): sample-factory's conv encoders want channels first. Lossless."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (c, h, w), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(observation, -1, 0))


class SampleFactoryPolicy:
    """A trained sample-factory actor-critic acting on `make_env(spec)` observations."""

    name = "sample-factory"

    def __init__(
        self, model_dir: str, spec: TaskSpec, deterministic: bool = True, choice: dict[str, Any] | None = None
    ) -> None:
        import torch
        from sample_factory.model.actor_critic import create_actor_critic
        from sample_factory.model.model_utils import get_rnn_size
        from sample_factory.utils.attr_dict import AttrDict

        self.spec = spec
        self.deterministic = deterministic
        self.model_dir = model_dir
        self.choice = choice or {}  # ExpertMetadata.choice_provenance: the store chose it among candidates
        try:
            with open(os.path.join(model_dir, "config.json")) as f:
                self.cfg = AttrDict(json.load(f))
            state = load_checkpoint(os.path.join(model_dir, "model.pth"))
        except (OSError, ValueError, PipelineError) as exc:
            raise PipelineError(
                f"cannot load the sample-factory expert in {model_dir}: {type(exc).__name__}: {exc} "
                "(retrain it with `pipeline train-experts --overwrite`)"
            ) from exc
        obs_space = gym.spaces.Dict({"obs": observation_space(spec)})
        self.model = create_actor_critic(self.cfg, obs_space, action_space(spec))
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.steps_trained = int(state.get("env_steps", 0))
        self._rnn_size = get_rnn_size(self.cfg)
        self._rnn = torch.zeros([1, self._rnn_size])
        self._generator = torch.Generator().manual_seed(0)

    def reset(self, env: gym.Env, seed: int) -> None:
        import torch

        self._rnn = torch.zeros([1, self._rnn_size])
        torch.manual_seed(seed)  # stochastic actions replay identically for a given episode seed

    def batchable(self) -> bool:
        """Deterministic actions and no recurrent state: rows of a batch are independent episodes."""
        return self.deterministic and not self.cfg.get("use_rnn", False)

    def act_batch(self, observations: np.ndarray) -> np.ndarray:
        """One forward pass for a batch of observations (envs stepped in lockstep by rollout)."""
        import torch
        from sample_factory.algo.utils.action_distributions import argmax_actions
        from sample_factory.algo.utils.rl_utils import prepare_and_normalize_obs

        obs = np.asarray(observations)
        if self.spec.observation.type == "image":
            obs = np.moveaxis(obs, -1, 1)
        with torch.no_grad():
            batch = prepare_and_normalize_obs(self.model, {"obs": torch.as_tensor(np.ascontiguousarray(obs))})
            self.model(batch, torch.zeros([len(obs), self._rnn_size]))
            actions = argmax_actions(self.model.action_distribution()).numpy()
        if self.spec.action.type == "discrete":
            return actions.reshape(len(obs)).astype(np.int64)
        return actions.reshape(len(obs), -1).astype(np.float32)

    def act(self, observation: Any, info: dict[str, Any]) -> Any:
        import torch
        from sample_factory.algo.utils.action_distributions import argmax_actions
        from sample_factory.algo.utils.rl_utils import prepare_and_normalize_obs

        obs = np.asarray(observation)
        if self.spec.observation.type == "image":
            obs = np.moveaxis(obs, -1, 0)
        with torch.no_grad():
            batch = prepare_and_normalize_obs(
                self.model, {"obs": torch.as_tensor(np.ascontiguousarray(obs))[None]}
            )
            out = self.model(batch, self._rnn)
            actions = out["actions"]
            if self.deterministic:
                actions = argmax_actions(self.model.action_distribution())
            self._rnn = out["new_rnn_states"]
        if self.spec.action.type == "discrete":
            return int(actions.reshape(-1)[0])
        return actions.reshape(-1).numpy().astype(np.float32)

    def provenance(self) -> dict[str, Any]:
        return {
            "policy": "expert",
            "backend": self.name,
            "model_dir": self.model_dir,
            "steps_trained": self.steps_trained,
            "sample-factory": version("sample-factory"),
            **self.choice,
        }


def observation_space(spec: TaskSpec) -> gym.Space:
    """The observation space the network sees: images channels first, as `ChannelsFirst` gives them."""
    if spec.observation.type == "image":
        h, w, c = spec.observation.shape
        return gym.spaces.Box(0, 255, (c, h, w), np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, spec.observation.shape, np.float32)


def action_space(spec: TaskSpec) -> gym.Space:
    if spec.action.type == "discrete":
        return gym.spaces.Discrete(int(spec.action.n or 0))
    return gym.spaces.Box(spec.action.low, spec.action.high, spec.action.shape, np.float32)
