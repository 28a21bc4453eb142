"""`pipeline convert-jat`: a JAT checkpoint converted onto our model computes what JAT's own code computed.

The fixture (tests/fixtures/jat_reference/, written by benchmarks/jat_reference.py with JAT's code at
commit 834b49c under transformers 4.41) is a tiny random JAT checkpoint and its outputs on real rows
of each suite, as JAT's processor turned them into inputs. These tests need only the fixture.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipeline.cli import main
from pipeline.configs.model import ConvertJatConfig, EvaluateConfig
from pipeline.errors import PipelineError
from pipeline.model.convert_jat import SHARED_EMBEDDING, convert_jat
from pipeline.model.evaluate import evaluate, load_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "jat_reference"
CHECKPOINT = FIXTURE / "checkpoint"
SUITES = ("babyai", "metaworld", "mujoco", "atari")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "outputs.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("convert") / "jat"
    convert_jat(ConvertJatConfig(checkpoint=str(CHECKPOINT), out=str(out)))
    return out


def _inputs(suite: str, ref: dict[str, np.ndarray], tokenizer) -> dict[str, torch.Tensor]:
    """The rows JAT saw, in our model's input format (frames as uint8, missions as strings)."""
    get = lambda key: torch.from_numpy(ref[f"{suite}.{key}"])  # noqa: E731
    inputs = {"rewards": get("rewards"), "mask": get("mask")}
    for key in ("continuous_observations", "continuous_actions", "discrete_actions", "image_observations"):
        if f"{suite}.{key}" in ref:
            inputs[key] = get(key)
    if suite == "babyai":
        inputs["discrete_observations"] = get("discrete_observations")
        missions = ref["babyai.missions"]
        ids = tokenizer.encode(missions.reshape(-1).tolist()).reshape(*missions.shape, -1)
        inputs["text_observations"] = torch.from_numpy(ids)
    return inputs


def _assert_close(ours: torch.Tensor, theirs: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(ours.detach().numpy(), theirs, **TOLERANCE, err_msg=what)


def _check_against_reference(model_dir: Path, reference: dict[str, np.ndarray]) -> None:
    model, tokenizer = load_model(model_dir)  # what `pipeline evaluate` loads
    for suite in SUITES:
        inputs = _inputs(suite, reference, tokenizer)
        mask = inputs["mask"]
        with torch.no_grad():
            out = model(**inputs, return_loss=True)
        _assert_close(
            out.pred_actions[mask], reference[f"{suite}.pred_actions"][mask.numpy()], f"{suite} actions"
        )
        if suite in ("metaworld", "mujoco"):
            pred, ref = out.pred_observations[mask], reference[f"{suite}.pred_observations"][mask.numpy()]
            _assert_close(pred, ref, f"{suite} observations")
        elif suite == "atari":  # our predictions of steps with a successor, in JAT's order
            _assert_close(out.pred_observations, reference["atari.pred_observations"], "atari frames")
        else:  # JAT does not predict BabyAI's observations: its observation loss is 0
            assert out.pred_observations is None and f"{suite}.pred_observations" not in reference
        for key in ("loss", "observation_loss", "action_loss"):
            _assert_close(getattr(out, key), reference[f"{suite}.{key}"], f"{suite} {key}")


def test_converted_checkpoint_computes_what_jat_computes(converted, reference):
    config = json.loads((converted / "config.json").read_text())
    assert config["text_encoding"] == "gpt2"
    assert not config["predict_discrete_observations"] and config["image_decoder_attention"]
    # JAT's eval contexts (16 / 128 steps), capped by the fixture's 64 positions
    # JAT's four suites at its eval contexts (capped by its positions); a suite JAT never had at the default
    assert config["context_steps"] == {"atari": 16, "babyai": 32, "dmc": 32, "metaworld": 32, "mujoco": 32}
    _check_against_reference(converted, reference)


def test_missions_get_jats_gpt2_ids(converted, reference):
    """The saved tokenizer pads each mission with the end-of-text id to 64, as JatProcessor did."""
    _, tokenizer = load_model(converted)
    missions = reference["babyai.missions"]
    ids = tokenizer.encode(missions.reshape(-1).tolist()).reshape(*missions.shape, -1)
    jat_ids = reference["babyai.jat_discrete_observations"][..., 148:]
    np.testing.assert_array_equal(ids, jat_ids)
    assert (ids == tokenizer.fast.convert_tokens_to_ids("<|endoftext|>")).any()  # padding was exercised


def test_deduplicated_safetensors_checkpoint_converts_the_same(tmp_path, reference):
    """transformers 4.3x kept one name of JAT's tied embedding in model.safetensors, in half precision
    here: read either way, the converted model is the same."""
    checkpoint = tmp_path / "jat"
    shutil.copytree(CHECKPOINT, checkpoint)
    weights = torch.load(checkpoint / "pytorch_model.bin", weights_only=True)
    for alias in SHARED_EMBEDDING[:2]:
        del weights[alias]  # keep only multi_discrete_encoder.0.weight
    save_file({k: v.contiguous() for k, v in weights.items()}, checkpoint / "model.safetensors")
    (checkpoint / "pytorch_model.bin").unlink()
    out = tmp_path / "converted"
    convert_jat(ConvertJatConfig(checkpoint=str(checkpoint), out=str(out)))
    _check_against_reference(out, reference)


def _tampered(tmp_path: Path, edit) -> Path:
    checkpoint = tmp_path / "tampered"
    shutil.copytree(CHECKPOINT, checkpoint)
    weights = torch.load(checkpoint / "pytorch_model.bin", weights_only=True)
    config = json.loads((checkpoint / "config.json").read_text())
    edit(weights, config)
    torch.save(weights, checkpoint / "pytorch_model.bin")
    (checkpoint / "config.json").write_text(json.dumps(config))
    return checkpoint


def _shrink_decoder_bias(weights, config):
    weights["continuous_decoder.bias"] = weights["continuous_decoder.bias"][:-1].clone()


def _more_layers(weights, config):
    config["num_layers"], config["attention_types"] = 4, [[["global", "local"], 2]]


def _wider(weights, config):
    config["hidden_size"] = 200


def _extra_tensor(weights, config):
    weights["value_head.weight"] = torch.zeros(1, 100)


def _untied(weights, config):
    weights["single_discrete_encoder.weight"] = weights["single_discrete_encoder.weight"] + 1


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_shrink_decoder_bias, "tensor continuous_decoder.bias has shape (376,)"),
        (_more_layers, "lacks tensor transformer.h.2.ln_1.weight"),
        (_wider, "tensor transformer.wpe.weight has shape (64, 100)"),
        (_extra_tensor, "unexpected tensor value_head.weight"),
        (_untied, "tensor single_discrete_encoder.weight differs from transformer.wte.weight"),
    ],
)
def test_mismatching_checkpoint_is_refused_naming_the_tensor(tmp_path, capsys, edit, named):
    checkpoint = _tampered(tmp_path, edit)
    out = tmp_path / "out"
    assert main(["convert-jat", str(checkpoint), "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], errors
    assert not out.exists()


def test_other_architecture_is_refused(tmp_path):
    checkpoint = _tampered(tmp_path, lambda weights, config: config.update(model_type="gpt_neo"))
    with pytest.raises(PipelineError, match="'gpt_neo' model, not JAT's"):
        convert_jat(ConvertJatConfig(checkpoint=str(checkpoint), out=str(tmp_path / "out")))


def test_cli_converts_then_evaluate_scores_it(tmp_path, capsys):
    """`pipeline convert-jat` then `pipeline evaluate` on real envs: the GPT-2 mission path while acting."""
    out = tmp_path / "jat"
    assert main(["convert-jat", str(CHECKPOINT), "--out", str(out)]) == 0
    assert "tensors mapped" in capsys.readouterr().out
    assert main(["convert-jat", str(CHECKPOINT), "--out", str(out)]) == 2  # not empty: --overwrite
    result = evaluate(
        EvaluateConfig(
            model=str(out),
            tasks=("babyai-go-to", "mujoco-hopper"),
            episodes=1,
            max_episode_steps=5,
            random_baseline=False,
            bootstrap_reps=10,
            progress=False,
        )
    )
    assert [t.config for t in result.tasks] == ["babyai-go-to", "mujoco-hopper"]
    assert all(len(t.model.returns) == 1 and t.model.lengths[0] <= 5 for t in result.tasks)
    assert (out / "eval" / "babyai-go-to+mujoco-hopper" / "results.json").exists()
