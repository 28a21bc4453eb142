"""The thin JAT model's configuration: JAT's GPT-Neo backbone plus its per-modality settings.

`JatConfig` extends transformers' `GPTNeoConfig`, as JAT's own config did, so the backbone
(alternating global/local attention) is built straight from it and `save_pretrained` /
`from_pretrained` round-trip every field offline. Three presets fix the sizes: `tiny` (minutes
on a CPU), `small`, and `jat` (JAT's published backbone: hidden 768, 12 layers, 12 heads).
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import GPTNeoConfig

from pipeline.errors import PipelineError
from pipeline.suites import get_suite, suite_names


def default_context_steps() -> dict[str, int]:
    """Per-suite context in steps (one step = one observation token + one action token), JAT's values
    (`Suite.context_steps`): its eval used 32 steps for Atari and 256 elsewhere, and it trained Atari
    on 64-token windows."""
    return {name: get_suite(name).context_steps for name in suite_names()}


# "words": our word-level mission tokenizer; "gpt2": JAT's GPT-2 text path (converted checkpoints).
TEXT_ENCODINGS = ("words", "gpt2")

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "discrete_embed_dim": 8},
    "small": {"hidden_size": 384, "num_layers": 6, "num_heads": 6, "discrete_embed_dim": 8},
    "jat": {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "discrete_embed_dim": 15},
}


@strict
class JatConfig(GPTNeoConfig):
    """GPT-Neo settings plus JAT's encoders, decoders and loss weighting.

    Fields beyond GPT-Neo's (all saved in config.json):
    - max_continuous_size: continuous vectors (observation + reward, or action) are expanded
      to this size before the shared linear encoder (JAT: 377 = Humanoid's 376 + reward).
    - continuous_expand: "cyclic" (JAT: repeat the vector) or "zero" (zero-pad).
    - max_discrete_obs_size: discrete observation length (BabyAI: 148 ints), zero-padded.
    - discrete_obs_values: how many values a discrete observation entry can take (embedding rows).
    - discrete_obs_classes: classes predicted per entry for the discrete observation loss;
      targets at or above it are ignored (BabyAI's grid codes are all below 16).
    - discrete_embed_dim: per-entry embedding width of the discrete/text observation encoder.
    - max_discrete_actions: discrete action vocabulary (Atari's full set is 18).
    - text_vocab_size / max_text_tokens: the mission tokenizer's vocabulary and the tokens per
      step kept (JAT: 64), appended to the discrete observation as JAT did.
    - image_channels / image_size: Atari frame stacks, (84, 84, 4) uint8.
    - observation_loss_coef: κ; the loss is κ·observation + (1-κ)·action (JAT: 0.005).
    - use_rewards: feed the previous step's reward with the observation (JAT does, for
      continuous and discrete observations; images carry none).
    - context_steps: per-suite context in steps; max_position_embeddings must hold 2x the largest.
    - size_name: the preset this config came from (informational).

    Options that only a checkpoint converted from JAT's own (`pipeline convert-jat`) turns on, so
    that it computes what JAT computed; the defaults are this model's own design:
    - text_encoding: "words" (default): the mission's ids come from the word-level
      `MissionTokenizer` and the discrete entries and text ids have their own small embeddings.
      "gpt2": JAT's path — ids from GPT-2's byte-level BPE (the checkpoint's tokenizer.json, padded
      with its end-of-text id to 64), and the 148 ints and 64 text ids all look up one shared
      (text_vocab_size x hidden) token embedding, each followed by a linear layer to
      discrete_embed_dim units and a ReLU, then flattened and projected as in "words".
    - predict_discrete_observations: False skips BabyAI's observation prediction (JAT: "way too
      expensive"; its observation loss is 0 there) and has no discrete decoder.
    - image_decoder_attention: squeeze-excitation after the image decoder's first two transposed
      convs, as JAT's decoder has.
    """

    model_type = "jat_pipeline"

    max_continuous_size: int = 377
    continuous_expand: str = "cyclic"
    max_discrete_obs_size: int = 148
    discrete_obs_values: int = 256
    discrete_obs_classes: int = 16
    discrete_embed_dim: int = 8
    max_discrete_actions: int = 18
    text_vocab_size: int = 128
    max_text_tokens: int = 64
    image_channels: int = 4
    image_size: int = 84
    observation_loss_coef: float = 0.005
    use_rewards: bool = True
    context_steps: dict | None = None
    size_name: str = "custom"
    text_encoding: str = "words"
    predict_discrete_observations: bool = True
    image_decoder_attention: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if self.context_steps is None:
            self.context_steps = default_context_steps()
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        super().validate_architecture()
        if self.continuous_expand not in ("cyclic", "zero"):
            raise ValueError(f"continuous_expand must be 'cyclic' or 'zero', got {self.continuous_expand!r}")
        if self.text_encoding not in TEXT_ENCODINGS:
            raise ValueError(f"text_encoding must be one of {TEXT_ENCODINGS}, got {self.text_encoding!r}")
        if not 0.0 <= self.observation_loss_coef < 1.0:
            raise ValueError(f"observation_loss_coef must be in [0, 1), got {self.observation_loss_coef}")
        longest = max(self.context_steps.values())
        if 2 * longest > self.max_position_embeddings:
            raise ValueError(
                f"a context of {longest} steps needs {2 * longest} positions, "
                f"max_position_embeddings is {self.max_position_embeddings}"
            )

    def context_for(self, suite: str) -> int:
        """Context length in steps for a suite (falls back to the longest configured)."""
        return int(self.context_steps.get(suite, max(self.context_steps.values())))


def make_config(
    size: str,
    *,
    text_vocab_size: int,
    context_steps: dict[str, int] | None = None,
    observation_loss_coef: float = 0.005,
    use_rewards: bool = True,
) -> JatConfig:
    """A fresh config for a size preset; positions are sized to the longest context."""
    if size not in SIZES:
        raise PipelineError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    contexts = {**default_context_steps(), **(context_steps or {})}
    if any(not isinstance(v, int) or v < 1 for v in contexts.values()):
        raise PipelineError(f"context lengths must be positive step counts, got {contexts}")
    preset = SIZES[size]
    layers = preset["num_layers"]
    return JatConfig(
        vocab_size=1,  # GPT-Neo's token embedding is unused: the model feeds `inputs_embeds`
        hidden_size=preset["hidden_size"],
        num_layers=layers,
        num_heads=preset["num_heads"],
        attention_types=[[["global", "local"], layers // 2]],
        window_size=256,
        max_position_embeddings=2 * max(contexts.values()),
        discrete_embed_dim=preset["discrete_embed_dim"],
        text_vocab_size=text_vocab_size,
        observation_loss_coef=observation_loss_coef,
        use_rewards=use_rewards,
        context_steps=contexts,
        size_name=size,
        bos_token_id=None,
        eos_token_id=None,
        tie_word_embeddings=False,
    )


def check_task_fits(config: JatConfig, spec: Any) -> None:
    """Fail before any work when a task's spaces do not fit the model's fixed sizes."""
    obs, act = spec.observation, spec.action
    problems = []
    if act.type == "discrete" and (act.n or 0) > config.max_discrete_actions:
        problems.append(f"{act.n} discrete actions > max_discrete_actions {config.max_discrete_actions}")
    if act.type == "continuous" and act.dim > config.max_continuous_size:
        problems.append(f"action size {act.dim} > max_continuous_size {config.max_continuous_size}")
    if obs.type == "continuous" and obs.dim + int(config.use_rewards) > config.max_continuous_size:
        problems.append(
            f"observation size {obs.dim} (+ reward) > max_continuous_size {config.max_continuous_size}"
        )
    if obs.type == "discrete" and obs.dim > config.max_discrete_obs_size:
        problems.append(
            f"discrete observation size {obs.dim} > max_discrete_obs_size {config.max_discrete_obs_size}"
        )
    if obs.type == "image" and tuple(obs.shape) != (
        config.image_size,
        config.image_size,
        config.image_channels,
    ):
        problems.append(
            f"image shape {obs.shape} is not {(config.image_size,) * 2 + (config.image_channels,)}"
        )
    if problems:
        raise PipelineError(f"{spec.config} does not fit this model: {'; '.join(problems)}")
