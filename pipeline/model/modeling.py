"""The thin JAT model: per-modality encoders around a GPT-Neo backbone, one token per observation
and one per action, interleaved [o_0, a_0, o_1, a_1, …] as in JAT.

Written for transformers 5 (JAT's own code no longer runs there), following JAT's design:
- images (84x84x4 Atari frame stacks) go through 3 strided conv layers with instance norm and
  squeeze-excitation, then a linear layer to one token;
- discrete observations (BabyAI's 148 ints) and the mission's text tokens are embedded per
  entry, flattened and projected to one token; the previous reward fills the last unit;
- continuous observations (with the previous reward appended) and continuous actions are
  cyclically expanded (or zero-padded) to a fixed size and share one linear encoder and one
  linear decoder, as in JAT; discrete actions have their own embedding and head.
The hidden state at an observation token predicts that step's action; the one at an action
token predicts the next observation. Loss = κ·observation loss + (1-κ)·action loss (MSE for
continuous vectors and images, cross-entropy for discrete values).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GPTNeoModel
from transformers.cache_utils import Cache
from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoPreTrainedModel
from transformers.utils import ModelOutput

from pipeline.model.configuration import JatConfig

IGNORE_INDEX = -100


def expand_continuous(x: Tensor, size: int, mode: str) -> Tensor:
    """(…, d) -> (…, size): repeat the vector cyclically (JAT) or pad it with zeros."""
    d = x.shape[-1]
    if d > size:
        raise ValueError(f"continuous vector of size {d} exceeds max_continuous_size {size}")
    if mode == "cyclic":
        return x[..., torch.arange(size, device=x.device) % d]
    return F.pad(x, (0, size - d))


def normalise_images(frames: Tensor) -> Tensor:
    """uint8 (…, 84, 84, 4) channels-last -> float (…, 4, 84, 84) in [-1, 1], JAT's scaling."""
    x = frames.to(torch.float32).div(255.0).sub(0.5).div(0.5)
    return x.movedim(-1, -3)


class SqueezeExcite(nn.Module):
    """Channel attention after each conv (JAT's `AttentionLayer`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // 8, bias=False),
            nn.ReLU(),
            nn.Linear(channels // 8, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class ImageEncoder(nn.Module):
    """(N, 4, 84, 84) -> (N, hidden): three stride-2 convs (84 -> 42 -> 21 -> 11), then linear."""

    def __init__(self, channels: int, hidden_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in ((channels, 32), (32, 64), (64, 128)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.InstanceNorm2d(c_out),
                nn.LeakyReLU(),
                SqueezeExcite(c_out),
            ]
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(128 * 11 * 11, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.convs(x).flatten(1))


class ImageDecoder(nn.Module):
    """(N, hidden) -> (N, 4, 84, 84) in [-1, 1]: the encoder mirrored with transposed convs.

    `attention` adds squeeze-excitation after the first two upsamplings, as JAT's decoder has
    (only converted JAT checkpoints turn it on: `JatConfig.image_decoder_attention`)."""

    def __init__(self, channels: int, hidden_size: int, attention: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden_size, 128 * 11 * 11)
        self.up1 = nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1)  # 22
        self.norm1 = nn.InstanceNorm2d(64)
        self.up2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)  # 42
        self.norm2 = nn.InstanceNorm2d(32)
        self.up3 = nn.ConvTranspose2d(32, channels, 3, stride=2, padding=1, output_padding=1)  # 84
        self.att1 = SqueezeExcite(64) if attention else nn.Identity()
        self.att2 = SqueezeExcite(32) if attention else nn.Identity()

    def forward(self, h: Tensor) -> Tensor:
        x = self.fc(h).view(-1, 128, 11, 11)
        x = F.leaky_relu(self.norm1(self.up1(x)))
        x = self.att1(F.interpolate(x, size=(21, 21)))
        x = self.att2(F.leaky_relu(self.norm2(self.up2(x))))
        return torch.tanh(self.up3(x))


class SharedTokenEntries(nn.Module):
    """JAT's per-entry encoding (`text_encoding="gpt2"`): one (vocab x hidden) token embedding for
    discrete entries and text ids alike, then a linear layer to a few units and a ReLU."""

    def __init__(self, vocab_size: int, hidden_size: int, out_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.linear = nn.Linear(hidden_size, out_size)

    def forward(self, ids: Tensor) -> Tensor:
        return F.relu(self.linear(self.embedding(ids)))


class DiscreteObservationEncoder(nn.Module):
    """Discrete entries (N, 148) and text tokens (N, 64) -> (N, out): embed each, flatten, project.

    With `text_encoding="words"` the entries and the text ids have their own small embeddings;
    with "gpt2" both go through `SharedTokenEntries`, as JAT's multi-discrete encoder did."""

    def __init__(self, config: JatConfig, out_size: int) -> None:
        super().__init__()
        e = config.discrete_embed_dim
        self.size = config.max_discrete_obs_size
        self.text_tokens = config.max_text_tokens
        if config.text_encoding == "gpt2":
            self.entries = SharedTokenEntries(config.text_vocab_size, config.hidden_size, e)
        else:
            self.values = nn.Embedding(config.discrete_obs_values, e)
            self.text = nn.Embedding(config.text_vocab_size, e)
        self.proj = nn.Linear((config.max_discrete_obs_size + config.max_text_tokens) * e, out_size)

    def forward(self, discrete: Tensor, text: Tensor | None) -> Tensor:
        discrete = F.pad(discrete, (0, self.size - discrete.shape[-1]))
        if text is None:
            text = discrete.new_zeros(*discrete.shape[:-1], self.text_tokens)
        text = F.pad(text, (0, self.text_tokens - text.shape[-1]))
        if hasattr(self, "entries"):
            embedded = self.entries(torch.cat([discrete, text], dim=-1)).flatten(-2)
            return self.proj(embedded)
        parts = [self.values(discrete).flatten(-2), self.text(text).flatten(-2)]
        return self.proj(torch.cat(parts, dim=-1))


@dataclass
class JatOutput(ModelOutput):
    """What `JatModel.forward` returns.

    pred_actions: logits over `max_discrete_actions` (discrete) or the action vector (continuous),
    one per step. pred_observations: the next-observation prediction of each action token,
    (B, T, obs) for continuous ones and (B, T, 148, classes) logits for discrete ones; when the
    loss is computed, image and discrete predictions are made only for steps that have a
    successor and come flattened as (N, …), and images are not decoded at all without the loss.
    cache: the KV cache when `use_cache`.
    """

    loss: Tensor | None = None
    observation_loss: Tensor | None = None
    action_loss: Tensor | None = None
    pred_actions: Tensor | None = None
    pred_observations: Tensor | None = None
    last_hidden_state: Tensor | None = None
    cache: Cache | None = None


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of per-step values over valid steps (0 when none is valid, keeping the graph)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class JatModel(GPTNeoPreTrainedModel):
    """JAT on transformers 5: `save_pretrained` / `from_pretrained` work offline."""

    config_class = JatConfig
    config: JatConfig

    def __init__(self, config: JatConfig) -> None:
        super().__init__(config)
        h = config.hidden_size
        reward_unit = 1 if config.use_rewards else 0
        self.transformer = GPTNeoModel(config)
        self.image_encoder = ImageEncoder(config.image_channels, h)
        self.image_decoder = ImageDecoder(config.image_channels, h, config.image_decoder_attention)
        self.discrete_encoder = DiscreteObservationEncoder(config, h - reward_unit)
        if config.predict_discrete_observations:
            self.discrete_decoder = nn.Linear(h, config.max_discrete_obs_size * config.discrete_obs_classes)
        self.continuous_encoder = nn.Linear(config.max_continuous_size, h)
        self.continuous_decoder = nn.Linear(h, config.max_continuous_size)
        self.action_embedding = nn.Embedding(config.max_discrete_actions, h)
        self.action_head = nn.Linear(h, config.max_discrete_actions)
        self.post_init()

    # --- embedding ------------------------------------------------------------------------------
    def _continuous_observation_vector(self, obs: Tensor, rewards: Tensor | None) -> Tensor:
        if self.config.use_rewards:
            if rewards is None:
                rewards = torch.zeros(obs.shape[:-1], dtype=obs.dtype, device=obs.device)
            obs = torch.cat([obs, rewards.unsqueeze(-1).to(obs.dtype)], dim=-1)
        return expand_continuous(obs, self.config.max_continuous_size, self.config.continuous_expand)

    def embed_observations(
        self,
        *,
        image_observations: Tensor | None = None,
        discrete_observations: Tensor | None = None,
        text_observations: Tensor | None = None,
        continuous_observations: Tensor | None = None,
        rewards: Tensor | None = None,
    ) -> Tensor:
        """One token per step: (B, T, …) observations -> (B, T, hidden)."""
        if image_observations is not None:
            b, t = image_observations.shape[:2]
            x = normalise_images(image_observations.flatten(0, 1))
            return self.image_encoder(x).view(b, t, -1)
        if discrete_observations is not None:
            tokens = self.discrete_encoder(discrete_observations, text_observations)
            if self.config.use_rewards:
                r = rewards if rewards is not None else torch.zeros(tokens.shape[:-1], device=tokens.device)
                tokens = torch.cat([tokens, r.unsqueeze(-1).to(tokens.dtype)], dim=-1)
            return tokens
        if continuous_observations is not None:
            return self.continuous_encoder(
                self._continuous_observation_vector(continuous_observations, rewards)
            )
        raise ValueError("no observations given (image_, discrete_ or continuous_observations)")

    def embed_actions(
        self, *, discrete_actions: Tensor | None = None, continuous_actions: Tensor | None = None
    ) -> Tensor:
        """One token per step: (B, T[, A]) actions -> (B, T, hidden)."""
        if discrete_actions is not None:
            return self.action_embedding(discrete_actions)
        if continuous_actions is not None:
            expanded = expand_continuous(
                continuous_actions, self.config.max_continuous_size, self.config.continuous_expand
            )
            return self.continuous_encoder(expanded)
        raise ValueError("no actions given (discrete_ or continuous_actions)")

    @staticmethod
    def interleave(observations: Tensor, actions: Tensor) -> Tensor:
        """(B, T, H) twice -> (B, 2T, H) ordered o_0, a_0, o_1, a_1, …"""
        b, t, h = observations.shape
        return torch.stack([observations, actions], dim=2).view(b, 2 * t, h)

    def run_backbone(self, embeds: Tensor, cache: Cache | None = None, use_cache: bool = False):
        """GPT-Neo over input embeddings; positions continue from the cache's length."""
        return self.transformer(inputs_embeds=embeds, cache=cache, use_cache=use_cache, return_dict=True)

    # --- heads ----------------------------------------------------------------------------------
    def predict_actions(self, hidden: Tensor, continuous_size: int | None) -> Tensor:
        """Hidden states at observation tokens -> action logits (discrete) or the full expanded
        continuous vector (its first `continuous_size` entries are the action)."""
        if continuous_size is None:
            return self.action_head(hidden)
        return self.continuous_decoder(hidden)

    # --- forward --------------------------------------------------------------------------------
    def forward(
        self,
        *,
        image_observations: Tensor | None = None,
        discrete_observations: Tensor | None = None,
        text_observations: Tensor | None = None,
        continuous_observations: Tensor | None = None,
        discrete_actions: Tensor | None = None,
        continuous_actions: Tensor | None = None,
        rewards: Tensor | None = None,
        mask: Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool = False,
        return_loss: bool = True,
    ) -> JatOutput:
        """Run whole steps (B, T). `rewards[:, t]` is the reward received *before* step t
        (0 at an episode's first step), as JAT shifts them. `mask` (B, T) marks real steps:
        padding is at the end of each row, so causal attention already ignores it and the
        mask only selects which steps count in the loss."""
        obs_embeds = self.embed_observations(
            image_observations=image_observations,
            discrete_observations=discrete_observations,
            text_observations=text_observations,
            continuous_observations=continuous_observations,
            rewards=rewards,
        )
        act_embeds = self.embed_actions(
            discrete_actions=discrete_actions, continuous_actions=continuous_actions
        )
        out = self.run_backbone(self.interleave(obs_embeds, act_embeds), cache, use_cache)
        hidden = out.last_hidden_state
        h_obs, h_act = hidden[:, 0::2], hidden[:, 1::2]
        b, t = h_obs.shape[:2]
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=hidden.device)
        continuous_size = None if continuous_actions is None else continuous_actions.shape[-1]
        pred_actions = self.predict_actions(h_obs, continuous_size)
        action_loss = None
        if return_loss:
            action_loss = self._action_loss(pred_actions, discrete_actions, continuous_actions, mask)
        if continuous_size is not None:
            pred_actions = pred_actions[..., :continuous_size]
        pred_obs, obs_loss = self._observation_prediction(
            h_act,
            mask,
            return_loss,
            image_observations=image_observations,
            discrete_observations=discrete_observations,
            continuous_observations=continuous_observations,
            rewards=rewards,
        )
        loss = None
        if return_loss:
            kappa = self.config.observation_loss_coef
            loss = kappa * obs_loss + (1.0 - kappa) * action_loss
        return JatOutput(loss, obs_loss, action_loss, pred_actions, pred_obs, hidden, out.cache)

    def _action_loss(
        self, pred: Tensor, discrete: Tensor | None, continuous: Tensor | None, mask: Tensor
    ) -> Tensor:
        if discrete is not None:
            per_step = F.cross_entropy(pred.flatten(0, 1), discrete.flatten(), reduction="none")
            return _masked_mean(per_step.view(discrete.shape), mask)
        target = expand_continuous(continuous, self.config.max_continuous_size, self.config.continuous_expand)
        per_step = F.mse_loss(pred, target, reduction="none").mean(-1)
        return _masked_mean(per_step, mask)

    def _observation_prediction(
        self,
        h_act: Tensor,
        mask: Tensor,
        return_loss: bool,
        *,
        image_observations: Tensor | None,
        discrete_observations: Tensor | None,
        continuous_observations: Tensor | None,
        rewards: Tensor | None,
    ) -> tuple[Tensor | None, Tensor]:
        """Predict o_{t+1} from the action token of step t; the loss covers steps with a successor."""
        zero = h_act.new_zeros(())
        if self.config.observation_loss_coef == 0.0:
            return None, zero
        valid = mask[:, 1:]
        if image_observations is not None:
            if not return_loss:
                return None, zero  # decoding 84x84 frames is only worth it for the loss
            chosen = h_act[:, :-1][valid]
            if chosen.shape[0] == 0:
                return None, zero
            pred = self.image_decoder(chosen)
            target = normalise_images(image_observations[:, 1:][valid])
            return pred, F.mse_loss(pred, target)
        if discrete_observations is not None:
            if not self.config.predict_discrete_observations:
                return None, zero  # JAT's choice (converted checkpoints): no BabyAI observation loss
            n_classes = self.config.discrete_obs_classes
            size = self.config.max_discrete_obs_size
            if not return_loss:
                return self.discrete_decoder(h_act).view(*h_act.shape[:2], size, n_classes), zero
            chosen = h_act[:, :-1][valid]  # only steps with a successor: padding costs nothing
            target = F.pad(
                discrete_observations[:, 1:][valid],
                (0, size - discrete_observations.shape[-1]),
                value=IGNORE_INDEX,
            )
            target = target.masked_fill(target >= n_classes, IGNORE_INDEX)
            if (target != IGNORE_INDEX).sum() == 0:
                return None, zero
            logits = self.discrete_decoder(chosen).view(-1, n_classes)
            return logits, F.cross_entropy(logits, target.reshape(-1), ignore_index=IGNORE_INDEX)
        pred = self.continuous_decoder(h_act)
        if not return_loss:
            return pred[..., : continuous_observations.shape[-1]], zero
        target = self._continuous_observation_vector(continuous_observations, rewards)[:, 1:]
        per_step = F.mse_loss(pred[:, :-1], target, reduction="none").mean(-1)
        return pred[..., : continuous_observations.shape[-1]], _masked_mean(per_step, valid)
