"""Acting with the model one step at a time, with a KV cache.

Each env step feeds the previous action's token and the new observation's token into the
cache and reads the action off the observation token, so a step costs two tokens of
compute instead of a whole context. When the context is full, JAT slid its cache (keeping
keys computed at old positions); here the last `keep_steps` steps are re-encoded from
scratch instead, so the model always sees exactly what it saw in training: a window of
at most `context` steps starting at position 0. Within a window the decode equals a full
forward pass over it (tested).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pipeline.format.columns import REWARDS
from pipeline.model.devices import autocast
from pipeline.model.modeling import JatModel
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.suites import get_suite
from pipeline.tasks.registry import TaskSpec


def observation_inputs(
    spec: TaskSpec, observation: Any, tokenizer: MissionTokenizer | None
) -> dict[str, Tensor]:
    """One env observation (as `pipeline.tasks.envs.make_env` returns it) -> model inputs of shape (1, 1,
    …)."""
    return get_suite(spec.suite).layout.model_inputs(observation, tokenizer)


class IncrementalDecoder:
    """Step-by-step decoding for one episode at a time (call `reset` between episodes)."""

    def __init__(
        self,
        model: JatModel,
        spec: TaskSpec,
        tokenizer: MissionTokenizer | None,
        *,
        context_steps: int | None = None,
        keep_steps: int | None = None,
        deterministic: bool = False,
        seed: int = 0,
        precision: str = "fp32",
    ) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device  # inputs follow the model
        self.precision = precision
        self.spec = spec
        self.tokenizer = tokenizer
        self.context = context_steps or model.config.context_for(spec.suite)
        if 2 * self.context > model.config.max_position_embeddings:
            raise ValueError(
                f"context {self.context} exceeds the model's {model.config.max_position_embeddings // 2}"
            )
        self.keep = keep_steps if keep_steps is not None else self.context // 2
        if not 0 <= self.keep < self.context:
            raise ValueError(f"keep_steps must be in [0, {self.context}), got {self.keep}")
        self.deterministic = deterministic
        # a CPU generator whatever the device: the same seed samples the same actions anywhere
        self.generator = torch.Generator().manual_seed(seed)
        self.continuous = spec.action.type == "continuous"
        self.reset()

    def reset(self) -> None:
        self.cache = None
        self.cached_tokens = 0
        self.history: deque[tuple[Tensor, Tensor]] = deque(maxlen=self.context)
        self.pending_obs: Tensor | None = None
        self.last_action: Tensor | None = None
        self.rebuilds = 0

    @torch.no_grad()
    def observe(self, observation: Any, reward: float | None) -> Tensor:
        """Feed o_t (with r_{t-1}); returns the raw action prediction (logits or vector), shape (out,)."""
        if self.pending_obs is not None:
            raise RuntimeError("record_action() must follow observe() before the next observation")
        inputs = observation_inputs(self.spec, observation, self.tokenizer)
        inputs[REWARDS] = torch.tensor([[0.0 if reward is None else float(reward)]])
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with autocast(self.device, self.precision):
            return self._observe(inputs)

    def _observe(self, inputs: dict[str, Tensor]) -> Tensor:
        obs_emb = self.model.embed_observations(**inputs)
        new = obs_emb if self.last_action is None else torch.cat([self.last_action, obs_emb], dim=1)
        if self.cached_tokens + new.shape[1] > 2 * self.context:
            recent = list(self.history)[len(self.history) - self.keep :] if self.keep else []
            pairs = [torch.cat(p, dim=1) for p in recent]
            new = torch.cat([*pairs, obs_emb], dim=1)
            self.cache, self.cached_tokens = None, 0
            self.rebuilds += 1
        out = self.model.run_backbone(new, self.cache, use_cache=True)
        self.cache = out.cache
        self.cached_tokens += new.shape[1]
        self.pending_obs = obs_emb
        size = self.spec.action.dim if self.continuous else None
        pred = self.model.predict_actions(out.last_hidden_state[:, -1], size)[0].float().cpu()
        return pred[:size] if self.continuous else pred

    @torch.no_grad()
    def record_action(self, action: Any) -> None:
        """Feed a_t: its token enters the cache with the next observation."""
        if self.pending_obs is None:
            raise RuntimeError("observe() must come before record_action()")
        with autocast(self.device, self.precision):
            if self.continuous:
                tensor = torch.as_tensor(np.asarray(action, dtype=np.float32)).view(1, 1, -1)
                emb = self.model.embed_actions(continuous_actions=tensor.to(self.device))
            else:
                action_id = torch.tensor([[int(action)]], device=self.device)
                emb = self.model.embed_actions(discrete_actions=action_id)
        self.history.append((self.pending_obs, emb))
        self.pending_obs, self.last_action = None, emb

    def choose(self, pred: Tensor) -> int | np.ndarray:
        """Logits -> an action among the env's n (sampled, as JAT's eval, or greedy); vectors are clipped."""
        if self.continuous:
            return np.clip(pred.numpy(), self.spec.action.low, self.spec.action.high).astype(np.float32)
        logits = pred[: self.spec.action.n]
        if self.deterministic:
            return int(logits.argmax())
        return int(torch.multinomial(logits.softmax(-1), 1, generator=self.generator))

    def act(self, observation: Any, reward: float | None) -> int | np.ndarray:
        """The action for o_t given the reward of the previous step (None at the first step)."""
        action = self.choose(self.observe(observation, reward))
        self.record_action(action)
        return action
