"""The model on real data from the sample rollout: shapes, losses, masking, save/load, incremental decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import SAMPLE_CONFIGS, SHORT_CONTEXTS

from pipeline.model.data import collate
from pipeline.model.inference import IncrementalDecoder
from pipeline.model.modeling import JatModel, expand_continuous
from pipeline.tasks.registry import get_task


def _batch(table, rows_and_lengths):
    return collate([table.window(row, 0, min(n, int(table.lengths[row]))) for row, n in rows_and_lengths])


def test_expand_continuous_cyclic_and_zero():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert expand_continuous(x, 7, "cyclic").tolist() == [[1, 2, 3, 1, 2, 3, 1]]
    assert expand_continuous(x, 5, "zero").tolist() == [[1, 2, 3, 0, 0]]
    with pytest.raises(ValueError):
        expand_continuous(x, 2, "cyclic")


@pytest.mark.parametrize("config", SAMPLE_CONFIGS)
def test_shapes_and_loss_per_modality(config, tiny_model, episode_tables):
    spec = get_task(config)
    table = episode_tables[config]
    context = SHORT_CONTEXTS[spec.suite]
    batch = _batch(table, [(0, context), (1, context // 2)])
    b, t = batch["mask"].shape
    tiny_model.train()
    out = tiny_model(**batch)
    if spec.action.type == "discrete":
        assert out.pred_actions.shape == (b, t, tiny_model.config.max_discrete_actions)
    else:
        assert out.pred_actions.shape == (b, t, spec.action.dim)
    if spec.observation.type == "continuous":
        assert out.pred_observations.shape == (b, t, spec.observation.dim)
    else:  # images and discrete entries are predicted only for steps with a successor
        successors = int(batch["mask"][:, 1:].sum())
        assert out.pred_observations.shape[0] == successors * (148 if spec.suite == "babyai" else 1)
    for value in (out.loss, out.action_loss, out.observation_loss):
        assert torch.isfinite(value) and value > 0
    kappa = tiny_model.config.observation_loss_coef
    assert torch.allclose(out.loss, kappa * out.observation_loss + (1 - kappa) * out.action_loss)
    out.loss.backward()
    encoder = {"atari": tiny_model.image_encoder, "babyai": tiny_model.discrete_encoder}.get(
        spec.suite, tiny_model.continuous_encoder
    )
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters() if p.requires_grad)
    untouched = tiny_model.image_decoder if spec.suite != "atari" else tiny_model.continuous_decoder
    assert all(p.grad is None for p in untouched.parameters())


@pytest.mark.parametrize("config", ["babyai-go-to", "metaworld-reach"])
def test_padding_does_not_change_the_loss(config, tiny_model, episode_tables):
    """Garbage in padded steps must not leak: causal attention plus masked losses."""
    table = episode_tables[config]
    batch = _batch(table, [(0, 30), (1, 12)])
    assert not batch["mask"].all()
    with torch.no_grad():
        clean = tiny_model(**batch)
        noisy = {k: v.clone() for k, v in batch.items()}
        pad = ~batch["mask"]
        for key, value in noisy.items():
            if key != "mask":
                value[pad] = (
                    torch.randint_like(value[pad], 1, 5)
                    if value.dtype == torch.int64
                    else torch.randn_like(value[pad].float()).to(value.dtype)
                )
        dirty = tiny_model(**noisy)
    assert torch.allclose(clean.loss, dirty.loss, atol=1e-6)
    assert torch.allclose(clean.pred_actions[batch["mask"]], dirty.pred_actions[batch["mask"]], atol=1e-5)


def test_rewards_are_fed_shifted(episode_tables):
    table = episode_tables["metaworld-reach"]
    rewards = table.columns["rewards"][0].values.to_numpy()
    window = table.window(0, 0, 10)
    assert window["rewards"][0] == 0.0
    np.testing.assert_allclose(window["rewards"][1:], rewards[:9])
    later = table.window(0, 5, 4)
    np.testing.assert_allclose(later["rewards"], rewards[4:8])


def test_save_load_round_trip_gives_identical_outputs(tiny_model, episode_tables, tmp_path):
    batches = {c: _batch(episode_tables[c], [(0, 8)]) for c in SAMPLE_CONFIGS}
    tiny_model.save_pretrained(tmp_path)
    loaded = JatModel.from_pretrained(tmp_path).eval()
    saved = {k: v for k, v in tiny_model.config.to_dict().items() if k != "_name_or_path"}
    assert {k: v for k, v in loaded.config.to_dict().items() if k != "_name_or_path"} == saved
    assert loaded.config.context_steps == SHORT_CONTEXTS
    with torch.no_grad():
        for batch in batches.values():
            a, b = tiny_model(**batch), loaded(**batch)
            assert torch.equal(a.pred_actions, b.pred_actions)
            assert torch.equal(a.loss, b.loss)


def _env_observation(table, spec, window, row, start, t):
    """The observation as the env returns it, rebuilt from the stored step."""
    if spec.suite == "atari":
        return window["image_observations"][t]
    if spec.suite == "babyai":
        mission = table.columns["text_observations"][row].values[start + t].as_py()
        return {"discrete_observations": window["discrete_observations"][t], "text_observations": mission}
    return window["continuous_observations"][t]


@pytest.mark.parametrize("config", ["babyai-go-to", "metaworld-reach", "atari-breakout"])
def test_incremental_decode_equals_full_forward(config, tiny_model, episode_tables, tokenizer):
    """KV-cached decoding matches a full forward pass, also after the context slides (re-encode)."""
    spec = get_task(config)
    table = episode_tables[config]
    context, keep = SHORT_CONTEXTS[spec.suite], SHORT_CONTEXTS[spec.suite] // 2
    row = int(np.argmax(table.lengths))
    steps = min(int(table.lengths[row]), 2 * context - keep)  # crosses one boundary, not two
    assert steps > context, "the sample episode is too short to cross a context boundary"
    window = table.window(row, 0, steps)
    decoder = IncrementalDecoder(tiny_model, spec, tokenizer, keep_steps=keep)
    predictions = []
    for t in range(steps):
        reward = None if t == 0 else float(window["rewards"][t])
        predictions.append(decoder.observe(_env_observation(table, spec, window, row, 0, t), reward))
        action = (
            window["continuous_actions"][t]
            if "continuous_actions" in window
            else window["discrete_actions"][t]
        )
        decoder.record_action(action)
    assert decoder.rebuilds == 1
    with torch.no_grad():
        first = tiny_model(**collate([{k: v[:context] for k, v in window.items()}]), return_loss=False)
        shifted_start = context - keep  # after the re-encode the window starts here
        second = tiny_model(
            **collate([table.window(row, shifted_start, steps - shifted_start)]), return_loss=False
        )
    for t in range(context):
        torch.testing.assert_close(predictions[t], first.pred_actions[0, t], atol=2e-5, rtol=1e-4)
    for t in range(context, steps):
        torch.testing.assert_close(
            predictions[t], second.pred_actions[0, t - shifted_start], atol=2e-5, rtol=1e-4
        )
