"""Devices, precision, gradient accumulation and torch.compile of `train-model` (and `evaluate`)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from model_helpers import SAMPLE_CONFIGS

from pipeline.cli import main
from pipeline.configs.model import EvaluateConfig
from pipeline.errors import PipelineError
from pipeline.model import train as train_module
from pipeline.model.checkpoints import CHECKPOINT, read_checkpoint
from pipeline.model.devices import resolve_device
from pipeline.model.evaluate import load_model
from pipeline.model.train import TrainModelConfig, train_model

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


# Conv biases right before an InstanceNorm: their exact gradient is 0 (the norm removes the mean),
# so AdamW turns float noise into lr-sized steps of random sign, different for any two summation orders.
ZERO_GRADIENT = {f"image_encoder.convs.{i}.bias" for i in (0, 4, 8)}


def _losses(out):
    with open(out / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


def _run(data, out, **overrides):
    settings = dict(
        data=str(data),
        configs=("metaworld-reach",),
        steps=3,
        batch_size=2,
        context_steps=16,
        atari_context_steps=4,
        checkpoint_every=1000,
        eval_batches=0,
        out=str(out),
        progress=False,
    )
    return train_model(TrainModelConfig(**{**settings, **overrides}))


def _parameters(out):
    model, _ = load_model(out)
    return {name: p.detach() for name, p in model.named_parameters()}


@pytest.mark.parametrize("config", SAMPLE_CONFIGS)
def test_accumulated_micro_batches_give_the_loss_and_update_of_one_larger_batch(
    sample_dataset, tmp_path, config
):
    # context 32 is longer than many hopper/breakout episodes: micro-batches differ in padding
    common = dict(configs=(config,), steps=3, context_steps=32, atari_context_steps=8, seed=3)
    whole = _run(sample_dataset, tmp_path / "whole", batch_size=6, grad_accum=1, **common)
    split = _run(sample_dataset, tmp_path / "split", batch_size=2, grad_accum=3, **common)
    assert whole.tokens == split.tokens  # the same windows were drawn
    for a, b in zip(_losses(tmp_path / "whole"), _losses(tmp_path / "split"), strict=True):
        for key in ("loss", "action_loss", "observation_loss"):
            np.testing.assert_allclose(float(b[key]), float(a[key]), rtol=1e-4, atol=2e-6, err_msg=key)
    after_whole, after_split = _parameters(tmp_path / "whole"), _parameters(tmp_path / "split")
    for name, value in after_whole.items():  # three updates from the same gradients
        if name not in ZERO_GRADIENT:
            torch.testing.assert_close(after_split[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_bf16_autocast_trains_on_cpu_and_a_resume_keeps_the_precision(sample_dataset, tmp_path):
    fp32 = _run(sample_dataset, tmp_path / "fp32", device="cpu")
    bf16 = _run(sample_dataset, tmp_path / "bf16", device="cpu", precision="bf16", checkpoint_every=3)
    assert bf16.step == 3 and np.isfinite(list(bf16.train_losses.values())).all()
    first32, first16 = (float(_losses(tmp_path / d)[0]["loss"]) for d in ("fp32", "bf16"))
    assert first16 != first32  # autocast really ran in bf16 ...
    np.testing.assert_allclose(first16, first32, rtol=0.05)  # ... on the same batch and weights
    assert fp32.step == 3
    model, _ = load_model(tmp_path / "bf16")
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # weights stay fp32
    with pytest.raises(PipelineError, match="precision differ"):
        _run(sample_dataset, tmp_path / "bf16", steps=4, precision="fp32", resume=True)
    with pytest.raises(PipelineError, match="grad_accum differ"):
        _run(sample_dataset, tmp_path / "bf16", steps=4, precision="bf16", grad_accum=2, resume=True)


def test_a_checkpoint_written_on_cpu_resumes_with_device_auto_exactly(sample_dataset, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    _run(sample_dataset, straight, steps=4, device="cpu")
    interrupted = tmp_path / "interrupted"
    original = train_module._Run.train_step

    def crash_after_step_two(self):
        if self.step == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(train_module._Run, "train_step", crash_after_step_two)
    with pytest.raises(KeyboardInterrupt):
        _run(sample_dataset, interrupted, steps=4, device="cpu", checkpoint_every=2)
    monkeypatch.setattr(train_module._Run, "train_step", original)
    _, _, state = read_checkpoint(interrupted / CHECKPOINT, resolve_device("auto"))
    assert state["step"] == 2 and state["config"]["device"] == "cpu"
    assert state["torch_rng"].device.type == "cpu" and state["grad_scaler"] == {}
    _run(sample_dataset, interrupted, steps=4, device="auto", resume=True)
    assert _losses(straight) == _losses(interrupted)
    resumed = _parameters(interrupted)
    for name, value in _parameters(straight).items():
        assert torch.equal(resumed[name], value), name


@no_cuda
def test_device_cuda_without_cuda_is_one_line_and_exit_2_before_any_work(sample_dataset, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train-model", "--data", str(sample_dataset), "--out", str(out), "--device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert (
        code == 2 and "--device cuda" in err and "sees no CUDA device" in err and len(err.splitlines()) == 1
    )
    assert not out.exists()
    code = main(
        ["evaluate", "--model", str(tmp_path / "none"), "--tasks", "babyai-go-to", "--device", "cuda"]
    )
    assert code == 2 and "sees no CUDA device" in capsys.readouterr().err


@no_cuda
def test_fp16_needs_cuda(sample_dataset, tmp_path):
    with pytest.raises(PipelineError, match="fp16 needs CUDA"):
        TrainModelConfig(data="d", device="cpu", precision="fp16")
    with pytest.raises(PipelineError, match="fp16 needs CUDA"):  # auto resolved to this CPU machine
        _run(sample_dataset, tmp_path / "fp16", precision="fp16")
    assert not (tmp_path / "fp16").exists()
    with pytest.raises(PipelineError, match="fp16 needs CUDA"):
        EvaluateConfig(model="m", tasks=("babyai-go-to",), device="cpu", precision="fp16")


def test_bad_values_are_refused_naming_the_flag():
    with pytest.raises(PipelineError, match="--grad-accum must be a positive integer"):
        TrainModelConfig(data="d", grad_accum=0)
    with pytest.raises(PipelineError, match="unknown --device 'gpu'"):
        TrainModelConfig(data="d", device="gpu")
    with pytest.raises(PipelineError, match="unknown --precision 'fp8'"):
        EvaluateConfig(model="m", tasks=("babyai-go-to",), precision="fp8")
    with pytest.raises(PipelineError, match="--workers actors act on CPU"):
        EvaluateConfig(model="m", tasks=("babyai-go-to",), device="cuda", workers=2)


def test_cli_flags_reach_the_training_run(sample_dataset, tmp_path):
    out = tmp_path / "cli"
    args = ["train-model", "--data", str(sample_dataset), "--configs", "mujoco-hopper", "--steps", "2"]
    args += ["--batch-size", "2", "--context", "8", "--out", str(out), "--no-progress"]
    args += ["--device", "cpu", "--precision", "bf16", "--grad-accum", "2"]
    assert main(args) == 0
    state = read_checkpoint(out / CHECKPOINT)[2]
    assert (state["config"]["precision"], state["config"]["grad_accum"]) == ("bf16", 2)
    assert state["config"]["device"] == "cpu"


@pytest.mark.slow
def test_compiled_training_matches_eager(sample_dataset, tmp_path):
    """Inductor compiles on CPU with the machine's C compiler (about a minute per shape on 2 cores):
    Meta-World episodes are longer than the context, so every batch has one shape."""
    common = dict(steps=2, context_steps=8, device="cpu")
    _run(sample_dataset, tmp_path / "eager", **common)
    _run(sample_dataset, tmp_path / "compiled", compile=True, **common)
    for a, b in zip(_losses(tmp_path / "eager"), _losses(tmp_path / "compiled"), strict=True):
        np.testing.assert_allclose(float(b["loss"]), float(a["loss"]), rtol=1e-4)
