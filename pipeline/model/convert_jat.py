"""`pipeline convert-jat`: JAT's released checkpoint (its own `JatModel`, transformers 4.x) as this model.

JAT's checkpoint (`huggingface-cli download jat-project/jat`) holds config.json, the weights
(model.safetensors or pytorch_model.bin, possibly sharded) and the GPT-2 tokenizer its processor
used. Every tensor is mapped onto ours by name (`tensor_table`), into a config that turns on the
options reproducing JAT's computation exactly: `text_encoding="gpt2"` (GPT-2 ids for the mission,
one shared token embedding for BabyAI's ints and the text ids, a linear layer and a ReLU per
entry), `predict_discrete_observations=False` (JAT skipped it), `image_decoder_attention=True`,
and an action head over the whole GPT-2 vocabulary (JAT's discrete actions are token ids of its
shared embedding; evaluation masks the logits to the env's actions, as JAT did).
`tests/model/test_convert_jat.py` checks the outputs against JAT's own code on every suite.

A checkpoint of another architecture, or whose weights do not match its config.json, is refused
with one line naming the first mismatching tensor. Nothing reads JAT's remote code.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pipeline.configs.model import ConvertJatConfig
from pipeline.errors import PipelineError
from pipeline.model.checkpoints import save_model
from pipeline.model.configuration import JatConfig
from pipeline.model.modeling import JatModel
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.suites import get_suite, suite_names

log = logging.getLogger(__name__)

JAT_TEXT_TOKENS = 64  # JatProcessor pads every mission to 64 GPT-2 ids
JAT_IMAGE = (84, 4)  # JAT's ImageEncoder is written for 84x84 frame stacks of 4
# JAT's eval_jat.py kept a KV cache of 32 tokens for Atari and 256 elsewhere (context_window counts
# tokens, two per step): the context, in steps, the released agent was scored with, is each suite's
# `Suite.jat_eval_context_steps`.
# transformer.wte is shared by JAT's discrete encoders: a checkpoint may hold any of these names.
SHARED_EMBEDDING = (
    "transformer.wte.weight",
    "single_discrete_encoder.weight",
    "multi_discrete_encoder.0.weight",
)
# JAT tensors with no counterpart here, and why that changes nothing for RL tasks.
DROPPED = {
    r"vit_encoder\..*": "ViT patch embedding of JAT's image-text tasks (VQA, captioning): none here",
    r"multi_discrete_decoder\..*": "defined by JAT but never called: JAT did not predict BabyAI observations",
    r"transformer\.h\.\d+\.attn\.attention\.(bias|masked_bias)": "causal-mask buffers of older transformers",
}
# Our tensors with no JAT counterpart: filled so the computation is JAT's.
FILLED = {
    "transformer.wte.weight": "GPT-Neo's own token embedding, unused (inputs_embeds): zeros",
    "action_head.bias": "JAT's action decoder has no bias: zeros",
}
REQUIRED_CONFIG = (
    "vocab_size",
    "hidden_size",
    "num_layers",
    "num_heads",
    "attention_types",
    "max_position_embeddings",
    "max_continuous_size",
    "max_discrete_value",
)


@dataclass(frozen=True)
class ConvertResult:
    out: str
    parameters: int
    mapped: int
    dropped: int


def tensor_table(num_layers: int) -> dict[str, str]:
    """Our tensor name -> JAT's (the shared embedding is named by its first alias)."""
    table = {"transformer.wpe.weight": "transformer.wpe.weight"}
    layer = (
        "ln_1.weight",
        "ln_1.bias",
        "attn.attention.k_proj.weight",
        "attn.attention.v_proj.weight",
        "attn.attention.q_proj.weight",
        "attn.attention.out_proj.weight",
        "attn.attention.out_proj.bias",
        "ln_2.weight",
        "ln_2.bias",
        "mlp.c_fc.weight",
        "mlp.c_fc.bias",
        "mlp.c_proj.weight",
        "mlp.c_proj.bias",
    )
    for i in range(num_layers):
        table |= {f"transformer.h.{i}.{name}": f"transformer.h.{i}.{name}" for name in layer}
    table |= {
        "transformer.ln_f.weight": "transformer.ln_f.weight",
        "transformer.ln_f.bias": "transformer.ln_f.bias",
    }
    for kind in ("weight", "bias"):
        table |= {
            f"continuous_encoder.{kind}": f"continuous_encoder.{kind}",
            f"continuous_decoder.{kind}": f"continuous_decoder.{kind}",
            f"discrete_encoder.entries.linear.{kind}": f"multi_discrete_encoder.1.{kind}",
            f"discrete_encoder.proj.{kind}": f"multi_discrete_encoder.4.{kind}",
            f"image_encoder.fc.{kind}": f"image_encoder.module.fc.{kind}",
            f"image_decoder.fc.{kind}": f"image_decoder.module.fc.{kind}",
        }
        for n, index in ((1, 0), (2, 4), (3, 8)):  # our convs: Sequential(conv, norm, act, att) x 3
            table[f"image_encoder.convs.{index}.{kind}"] = f"image_encoder.module.conv{n}.{kind}"
            table[f"image_decoder.up{n}.{kind}"] = f"image_decoder.module.deconv{n}.{kind}"
    for fc in (0, 2):
        for n, index in ((1, 3), (2, 7), (3, 11)):
            table[f"image_encoder.convs.{index}.fc.{fc}.weight"] = (
                f"image_encoder.module.att{n}.fc.{fc}.weight"
            )
        for n in (1, 2):
            table[f"image_decoder.att{n}.fc.{fc}.weight"] = f"image_decoder.module.att{n}.fc.{fc}.weight"
    table["action_head.weight"] = "single_discrete_decoder.weight"
    table["action_embedding.weight"] = SHARED_EMBEDDING[0]
    table["discrete_encoder.entries.embedding.weight"] = SHARED_EMBEDDING[0]
    return table


# --- reading JAT's checkpoint ---------------------------------------------------------------------
def read_jat_config(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / "config.json"
    if not path.is_file():
        raise PipelineError(f"{checkpoint} has no config.json: give the folder of JAT's checkpoint")
    raw = json.loads(path.read_text())
    if raw.get("model_type") != "jat":
        raise PipelineError(
            f"{path} is a {raw.get('model_type')!r} model, not JAT's (model_type 'jat'): convert-jat "
            "only reads JAT's JatModel checkpoints, e.g. `huggingface-cli download jat-project/jat`"
        )
    missing = [key for key in REQUIRED_CONFIG if key not in raw]
    if missing:
        raise PipelineError(f"{path} lacks {', '.join(missing)}: not a complete JAT config")
    if raw["max_discrete_value"] <= JAT_TEXT_TOKENS:
        raise PipelineError(
            f"{path}: max_discrete_value {raw['max_discrete_value']} must hold BabyAI's ints plus the "
            f"{JAT_TEXT_TOKENS} text ids (JAT: 148 + 64)"
        )
    kappa, action_coef = raw.get("observation_loss_coef", 0.005), raw.get("action_loss_coef", 0.995)
    if abs(kappa + action_coef - 1.0) > 1e-6:
        raise PipelineError(
            f"{path}: observation_loss_coef {kappa} + action_loss_coef {action_coef} != 1; "
            "this model's loss is κ·observation + (1-κ)·action"
        )
    return raw


def _weight_files(checkpoint: Path) -> list[Path]:
    for index_name, single in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index = checkpoint / index_name
        if index.is_file():
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [checkpoint / name for name in names]
        if (checkpoint / single).is_file():
            return [checkpoint / single]
    raise PipelineError(
        f"{checkpoint} has no model.safetensors or pytorch_model.bin: download the whole checkpoint "
        "(huggingface-cli download jat-project/jat --local-dir DIR)"
    )


def read_jat_weights(checkpoint: Path) -> dict[str, Tensor]:
    """Every tensor of the checkpoint, as float32 (JAT's may be saved in half precision)."""
    from safetensors.torch import load_file

    tensors: dict[str, Tensor] = {}
    for path in _weight_files(checkpoint):
        if not path.is_file():
            raise PipelineError(f"{path} is listed in the checkpoint's index but missing: download it again")
        if path.suffix == ".safetensors":
            part = load_file(path)
        else:
            part = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
        tensors |= part
    return {name: t.float() if t.is_floating_point() else t for name, t in tensors.items()}


def shared_embedding(jat: dict[str, Tensor]) -> Tensor:
    """JAT's transformer.wte under whichever of its aliases the checkpoint kept."""
    present = [name for name in SHARED_EMBEDDING if name in jat]
    if not present:
        raise PipelineError(
            f"the checkpoint lacks tensor {SHARED_EMBEDDING[0]}: not a JAT JatModel checkpoint"
        )
    first = jat[present[0]]
    for name in present[1:]:
        if jat[name].shape != first.shape or not torch.equal(jat[name], first):
            raise PipelineError(
                f"tensor {name} differs from {present[0]}: JAT ties them, so the checkpoint has been altered"
            )
    return first


# --- the converted model ----------------------------------------------------------------------------
def converted_config(jat: dict[str, Any]) -> JatConfig:
    """Our config computing what the JAT config's model computes."""
    hidden, positions, vocab = jat["hidden_size"], jat["max_position_embeddings"], jat["vocab_size"]
    contexts = {name: min(get_suite(name).jat_eval_context_steps, positions // 2) for name in suite_names()}
    backbone = {
        key: jat[key]
        for key in (
            "intermediate_size",
            "window_size",
            "activation_function",
            "resid_dropout",
            "embed_dropout",
            "attention_dropout",
            "layer_norm_epsilon",
            "initializer_range",
        )
        if key in jat
    }
    try:
        return JatConfig(
            vocab_size=1,  # GPT-Neo's own token embedding is unused: the model feeds inputs_embeds
            hidden_size=hidden,
            num_layers=jat["num_layers"],
            num_heads=jat["num_heads"],
            attention_types=jat["attention_types"],
            max_position_embeddings=positions,
            **backbone,
            max_continuous_size=jat["max_continuous_size"],
            continuous_expand="cyclic",
            max_discrete_obs_size=jat["max_discrete_value"] - JAT_TEXT_TOKENS,
            discrete_obs_values=vocab,
            discrete_embed_dim=hidden // 50,  # JAT: Linear(hidden, hidden // 50) per entry
            max_discrete_actions=vocab,
            text_vocab_size=vocab,
            max_text_tokens=JAT_TEXT_TOKENS,
            image_size=JAT_IMAGE[0],
            image_channels=JAT_IMAGE[1],
            observation_loss_coef=jat.get("observation_loss_coef", 0.005),
            use_rewards=True,
            context_steps=contexts,
            size_name="jat-converted",
            text_encoding="gpt2",
            predict_discrete_observations=False,
            image_decoder_attention=True,
            bos_token_id=None,
            eos_token_id=None,
            tie_word_embeddings=False,
        )
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"JAT's config.json does not describe a model this one can hold: {exc}") from exc


def map_tensors(jat: dict[str, Tensor], expected: dict[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """Our state dict from JAT's, refusing the first tensor that is missing, extra or misshapen."""
    table = tensor_table(num_layers)
    sources = set(table.values()) | set(SHARED_EMBEDDING)
    for name in jat:
        if name not in sources and not any(re.fullmatch(pattern, name) for pattern in DROPPED):
            raise PipelineError(
                f"unexpected tensor {name} in the checkpoint: not part of a JAT JatModel with "
                f"{num_layers} layers (another architecture, or config.json does not match the weights)"
            )
    embedding = shared_embedding(jat)
    state: dict[str, Tensor] = {}
    for ours, reference in expected.items():
        if ours in FILLED:
            state[ours] = torch.zeros_like(reference)
            continue
        if ours not in table:
            raise RuntimeError(f"no JAT source for {ours}: the conversion table is incomplete")
        source = table[ours]
        if source == SHARED_EMBEDDING[0]:
            tensor = embedding
        elif source in jat:
            tensor = jat[source]
        else:
            raise PipelineError(
                f"the checkpoint lacks tensor {source}: it is not a JAT model of config.json's size "
                f"({num_layers} layers)"
            )
        if tuple(tensor.shape) != tuple(reference.shape):
            raise PipelineError(
                f"tensor {source} has shape {tuple(tensor.shape)}, but config.json's sizes need "
                f"{tuple(reference.shape)}: the weights are of another size than their config"
            )
        state[ours] = tensor.to(reference.dtype)  # load_state_dict copies it into the parameter
    return state


def convert_tokenizer(checkpoint: Path, vocab_size: int) -> MissionTokenizer:
    """JAT's GPT-2 tokenizer, padding missions with its pad (= end-of-text) id to 64, as JatProcessor."""
    from transformers import PreTrainedTokenizerFast

    path = checkpoint / "tokenizer.json"
    if not path.is_file():
        raise PipelineError(
            f"{checkpoint} has no tokenizer.json (JAT's GPT-2 tokenizer for BabyAI missions): "
            "download the whole checkpoint (huggingface-cli download jat-project/jat --local-dir DIR)"
        )
    special: dict[str, Any] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (checkpoint / name).is_file():
            special |= {k: v for k, v in json.loads((checkpoint / name).read_text()).items() if v is not None}

    def token(key: str) -> str | None:
        value = special.get(key)
        return value.get("content") if isinstance(value, dict) else value

    eos = token("eos_token") or "<|endoftext|>"
    pad = token("pad_token") or eos  # generate_config_jat.py: pad_token = eos_token
    fast = PreTrainedTokenizerFast(
        tokenizer_file=str(path), eos_token=eos, pad_token=pad, model_max_length=JAT_TEXT_TOKENS
    )
    if fast.pad_token_id is None or len(fast) > vocab_size:
        raise PipelineError(
            f"{path} does not fit the model: pad token {pad!r} id {fast.pad_token_id}, "
            f"{len(fast)} tokens for a vocabulary of {vocab_size}"
        )
    return MissionTokenizer(fast, JAT_TEXT_TOKENS)


def convert_jat(config: ConvertJatConfig) -> ConvertResult:
    """Read JAT's checkpoint, map it onto our model and save a folder `pipeline evaluate` loads."""
    checkpoint = Path(config.checkpoint).expanduser()
    out = Path(config.out).expanduser()
    if not checkpoint.is_dir():
        raise PipelineError(f"{checkpoint} is not a folder: download JAT's checkpoint into one first")
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise PipelineError(
                f"{out} is not empty: pass --overwrite to replace it, or choose another --out"
            )
        shutil.rmtree(out)
    jat_config = read_jat_config(checkpoint)
    ours = converted_config(jat_config)
    tokenizer = convert_tokenizer(checkpoint, ours.text_vocab_size)
    weights = read_jat_weights(checkpoint)
    model = JatModel(ours)
    state = map_tensors(weights, model.state_dict(), ours.num_layers)
    dropped = [name for name in weights if any(re.fullmatch(p, name) for p in DROPPED)]
    for pattern, why in DROPPED.items():
        hits = [name for name in dropped if re.fullmatch(pattern, name)]
        if hits:
            log.info("dropped %d tensor(s) %s: %s", len(hits), pattern, why)
    model.load_state_dict(state, strict=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(out, model.eval(), tokenizer)
    parameters = sum(p.numel() for p in model.parameters())
    log.info("converted %s -> %s: %.1fM parameters", checkpoint, out, parameters / 1e6)
    return ConvertResult(str(out), parameters, len(state) - len(FILLED), len(dropped))
