"""A saved RLlib expert acting on `pipeline.tasks.envs.make_env(spec)` observations (rollout and evaluation).

The model folder holds the learner's RLModule (`module/`, read with `RLModule.from_checkpoint`,
once per rollout actor) and `policy.json`: what the env runners did around the module, which
acting must do too. Image frames are scaled to [0, 1] (as `experts.rllib.RLlibEnv` gave them to
the network in training), and with RLlib's `normalize_actions` (its default) a Box action is
the module's output mapped from [-1, 1] to the action bounds, as RLlib's module-to-env
connector does. The greedy action is the distribution's deterministic form: argmax for
discrete actions, the mean for Box ones.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from typing import Any

import gymnasium as gym
import numpy as np

from pipeline.errors import PipelineError
from pipeline.tasks.registry import TaskSpec

MODULE_DIR = "module"
POLICY_FILE = "policy.json"


def write_policy_file(directory: str, algo: str, normalize_actions: bool, steps: int) -> None:
    with open(os.path.join(directory, POLICY_FILE), "w") as f:
        json.dump({"algo": algo, "normalize_actions": normalize_actions, "steps": steps}, f)


class RLlibPolicy:
    """A trained RLlib RLModule; one forward pass per observation, or per batch of them."""

    name = "rllib"

    def __init__(
        self, model_dir: str, spec: TaskSpec, deterministic: bool = True, choice: dict[str, Any] | None = None
    ) -> None:
        from ray.rllib.core.rl_module.rl_module import RLModule

        self.spec, self.deterministic, self.model_dir = spec, deterministic, model_dir
        self.choice = choice or {}  # ExpertMetadata.choice_provenance: the store chose it among candidates
        try:
            with open(os.path.join(model_dir, POLICY_FILE)) as f:
                self.saved = json.load(f)
            self.module = RLModule.from_checkpoint(os.path.join(model_dir, MODULE_DIR))
        except Exception as exc:
            raise PipelineError(
                f"cannot load the rllib expert in {model_dir}: {type(exc).__name__}: {exc} "
                "(retrain it with `pipeline train-experts --backend rllib --overwrite`)"
            ) from exc
        self.module.eval()
        self.dist_cls = self.module.get_inference_action_dist_cls()
        self.image = spec.observation.type == "image"

    def reset(self, env: gym.Env, seed: int) -> None:
        import torch

        torch.manual_seed(seed)  # sampled (non-deterministic) actions replay identically for a seed

    def act(self, observation: Any, info: dict[str, Any]) -> Any:
        actions = self._actions(np.asarray(observation)[None], self.deterministic)
        if self.spec.action.type == "discrete":
            return int(actions[0])
        return actions[0]

    def batchable(self) -> bool:
        """Deterministic actions, no recurrent state: rows of a batch are independent episodes."""
        return self.deterministic and self.spec.observation.type != "dict"

    def act_batch(self, observations: np.ndarray) -> np.ndarray:
        """One forward pass for a batch of observations (envs stepped in lockstep by rollout)."""
        return self._actions(np.asarray(observations), deterministic=True)

    def _actions(self, observations: np.ndarray, deterministic: bool) -> np.ndarray:
        import torch
        from ray.rllib.core.columns import Columns

        obs = observations.astype(np.float32) / 255.0 if self.image else observations.astype(np.float32)
        with torch.no_grad():
            out = self.module.forward_inference({Columns.OBS: torch.as_tensor(obs)})
            dist = self.dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
            actions = (dist.to_deterministic() if deterministic else dist).sample().numpy()
        if self.spec.action.type == "discrete":
            return actions.reshape(len(obs)).astype(np.int64)
        actions = actions.reshape(len(obs), -1).astype(np.float32)
        low = np.asarray(self.spec.action.low, dtype=np.float32)
        high = np.asarray(self.spec.action.high, dtype=np.float32)
        if self.saved.get("normalize_actions", True) and np.all(np.isfinite(low) & np.isfinite(high)):
            actions = low + (np.clip(actions, -1.0, 1.0) + 1.0) * (high - low) / 2.0
        return actions

    def provenance(self) -> dict[str, Any]:
        return {
            "policy": "expert",
            "backend": self.name,
            "algo": self.saved.get("algo", ""),
            "model_dir": self.model_dir,
            "steps_trained": int(self.saved.get("steps", 0)),
            "ray": version("ray"),
            **self.choice,
        }
