"""Reference outputs of JAT's own code, for `tests/model/test_convert_jat.py` (issue 16, part 5).

It builds a tiny, randomly initialised JAT `JatModel` with JAT's original code (transformers 4.x),
saves it as JAT saves a checkpoint (`save_pretrained` of the model and of its `JatProcessor`), and
records what that model computes — action logits / vectors, observation predictions and the three
losses — on a few real rows of each suite, turned into model inputs by JAT's own `JatProcessor`.
The test converts the checkpoint with `pipeline convert-jat` and checks that our model computes the
same, without needing JAT's environment.

It runs in a separate venv holding JAT at commit 834b49c0ea28ba27cd7e0283a73b7c4f852ef622
(github.com/huggingface/jat, the last commit of its main branch):

    python3.11 -m venv /tmp/jat-venv
    /tmp/jat-venv/bin/pip install torch==2.13.0 "transformers==4.41.*" torchvision "gymnasium==0.29.1" \
        "numpy<2" "pyarrow<17" pillow
    git clone https://github.com/huggingface/jat /tmp/jat-src && git -C /tmp/jat-src checkout 834b49c
    /tmp/jat-venv/bin/pip install --no-deps /tmp/jat-src   # setup.py pins wandb, opencv...: unused
    .venv/bin/pipeline rollout --tasks mujoco-hopper,atari-breakout --episodes 2 --workers 0 \
        --policy random --max-episode-steps 40 --out /tmp/jr
    .venv/bin/pipeline rollout --tasks babyai-go-to,metaworld-reach --episodes 2 --workers 0 \
        --max-episode-steps 40 --out /tmp/jr
    /tmp/jat-venv/bin/python benchmarks/jat_reference.py --data /tmp/jr --out tests/fixtures/jat_reference

Choices, each so that the comparison can fail where a conversion could go wrong:
- hidden size 100 (JAT's per-entry width for BabyAI is hidden // 50 = 2, so the flattening order
  of the discrete encoder matters), 2 layers, a local-attention window of 6 tokens (shorter than
  the 16-token rows, so GPT-Neo's local layers differ from global ones);
- after JAT's initialisation every tensor is perturbed, so biases are not 0 and norms not 1 (a
  bias mapped to the wrong place would otherwise go unnoticed); the weights are then rounded to
  float16 and saved in float16 (the checkpoint stays ~6 MB), and the reference is computed with
  exactly those values in float32;
- JAT's processor encodes missions with the checkpoint's GPT-2-style tokenizer: a byte-level BPE
  of GPT-2's kind is trained here on the data's missions (GPT-2's own 50k vocabulary would make
  the embedding matrices 50257 x hidden, and the Hub is unreachable), its `<|endoftext|>` token is
  the last id and also the pad token, as in JAT's `generate_config_jat.py`;
- per suite two rows: a full window from an episode's start and a shorter one starting at step 1
  (so its first previous reward is a real one), padded by the processor as JAT pads (with the
  row's first step, attention mask 0).

The venv's torchvision wheel is CUDA-linked and cannot load its compiled ops against the CPU torch;
JAT only uses `torchvision.transforms.functional.to_tensor`, which is pure Python, so the package
is imported without running its `__init__` (its real code, not a substitute).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

JAT_COMMIT = "834b49c0ea28ba27cd7e0283a73b7c4f852ef622"
TASKS = {
    "babyai": "babyai-go-to",
    "metaworld": "metaworld-reach",
    "mujoco": "mujoco-hopper",
    "atari": "atari-breakout",
}
STEPS = {"babyai": 8, "metaworld": 8, "mujoco": 8, "atari": 4}
SEED = 0
EOS = "<|endoftext|>"


def import_torchvision_without_ops() -> None:
    spec = importlib.util.find_spec("torchvision")
    package = types.ModuleType("torchvision")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["torchvision"] = package


def read_episodes(data: Path, config: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(str(data / "data" / config / "*.parquet"))):  # train and test splits
        rows += pq.read_table(path).to_pylist()
    if not rows:
        raise SystemExit(f"no shards for {config} under {data}/data: roll them out first (see --help)")
    return rows


def pick_windows(episodes: list[dict], steps: int) -> list[tuple[dict, int, int]]:
    """(episode, start, length): a full window from step 0, and a shorter one from step 1."""
    long_enough = [e for e in episodes if len(e["rewards"]) >= steps]
    if not long_enough:
        raise SystemExit(f"no episode has {steps} steps: record longer episodes")
    first = long_enough[0]
    second = next((e for e in episodes if e is not first and len(e["rewards"]) >= steps - 1), first)
    return [(first, 0, steps), (second, 1, steps - 2)]


def window_inputs(suite: str, windows: list[tuple[dict, int, int]]) -> dict[str, list]:
    """Lists as JAT's processor takes them; rewards shifted as scripts/train_jat.py does."""
    batch: dict[str, list] = {"rewards": []}
    for episode, start, length in windows:
        shifted = [0.0, *list(episode["rewards"])[:-1]]  # train_jat.py's add_initial_reward
        batch["rewards"].append(shifted[start : start + length])
        for key, value in episode.items():
            if key == "rewards":
                continue
            part = list(value[start : start + length])
            if key == "image_observations":
                part = [np.asarray(Image.open(io.BytesIO(frame["bytes"]))) for frame in part]
            batch.setdefault(key, []).append(part)
    return batch


def build_tokenizer(missions: list[str]):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(missions, vocab_size=320, min_frequency=1, show_progress=False)
    bpe.add_special_tokens([EOS])  # appended: the last id, as GPT-2's 50256
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.pad_token = tokenizer.eos_token  # generate_config_jat.py
    return tokenizer


def perturb_(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Move every tensor off its trivial init (biases 0, norms 1), then round to float16 values."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 0.1 if name.endswith("bias") or "ln_" in name else 0.02
            param.add_(torch.randn(param.shape, generator=generator) * scale)
            param.copy_(param.half().float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset root written by `pipeline rollout`")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/jat_reference"))
    args = parser.parse_args()

    import_torchvision_without_ops()
    import transformers
    from jat.configuration_jat import JatConfig
    from jat.modeling_jat import JatModel
    from jat.processing_jat import JatProcessor
    from transformers import CLIPImageProcessor

    torch.manual_seed(SEED)
    episodes = {suite: read_episodes(args.data, config) for suite, config in TASKS.items()}
    missions = sorted({m for e in episodes["babyai"] for m in e["text_observations"]})
    tokenizer = build_tokenizer(missions)
    config = JatConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=64,
        hidden_size=100,
        num_layers=2,
        attention_types=[[["global", "local"], 1]],
        num_heads=4,
        window_size=6,
        max_discrete_value=148 + 64,
        tokenizer_class=tokenizer.__class__.__name__,
    )
    tokenizer.model_max_length = config.max_position_embeddings
    processor = JatProcessor(
        tokenizer=tokenizer,
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": config.image_size},
            crop_size={"height": config.image_size, "width": config.image_size},
        ),
    )
    model = JatModel(config)
    perturb_(model, torch.Generator().manual_seed(SEED))
    model.eval()

    arrays: dict[str, np.ndarray] = {}
    for suite in TASKS:
        windows = pick_windows(episodes[suite], STEPS[suite])
        raw = window_inputs(suite, windows)
        processed = processor(**raw, padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**processed, return_loss=True)
        mask = processed["attention_mask"].bool()
        p = f"{suite}."
        arrays[p + "mask"] = mask.numpy()
        arrays[p + "rewards"] = processed["rewards"].numpy()
        for key in ("continuous_observations", "continuous_actions", "discrete_actions"):
            if key in processed:
                arrays[p + key] = processed[key].numpy()
        if suite == "babyai":
            jat_discrete = processed["discrete_observations"].numpy()
            arrays[p + "jat_discrete_observations"] = jat_discrete  # 148 ints + 64 text ids
            arrays[p + "discrete_observations"] = jat_discrete[..., :148]
            padded = [m + [m[0]] * (mask.shape[1] - len(m)) for m in raw["text_observations"]]
            arrays[p + "missions"] = np.asarray(padded, dtype=str)
        if suite == "atari":  # the uint8 frames our model takes; JAT's processor scaled them
            frames = [f + [f[0]] * (mask.shape[1] - len(f)) for f in raw["image_observations"]]
            arrays[p + "image_observations"] = np.asarray(frames, dtype=np.uint8)
        arrays[p + "pred_actions"] = out.pred_actions.numpy()
        if out.pred_observations is not None:
            pred = out.pred_observations
            if suite == "atari":  # only steps with a successor (what the loss uses): keeps the file small
                pred = pred[:, :-1][mask[:, 1:]]
            arrays[p + "pred_observations"] = pred.numpy()
        for key in ("loss", "observation_loss", "action_loss"):
            arrays[p + key] = np.asarray(float(getattr(out, key)), dtype=np.float32)
        print(f"{suite}: loss {float(out.loss):.6f}, rows {mask.sum(1).tolist()} steps")

    checkpoint = args.out / "checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    # JAT ties transformer.wte to its discrete encoders; transformers 4.41 refuses to write shared
    # tensors to safetensors, so the checkpoint is a pytorch_model.bin (the converter reads both).
    model.half().save_pretrained(checkpoint, safe_serialization=False)
    processor.save_pretrained(checkpoint)
    for code in ("configuration_jat.py", "modeling_jat.py", "processing_jat.py"):
        (checkpoint / code).unlink(missing_ok=True)  # JAT's remote code: not read by the converter
    np.savez_compressed(args.out / "outputs.npz", **arrays)
    (args.out / "provenance.json").write_text(
        json.dumps(
            {
                "jat_commit": JAT_COMMIT,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "tasks": TASKS,
                "steps": STEPS,
                "seed": SEED,
                "script": "benchmarks/jat_reference.py",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {checkpoint} and {args.out / 'outputs.npz'}")


if __name__ == "__main__":
    main()
