"""JAT's original `JatModel` trained on a recorded batch plan (`model_throughput.py --jat-python`'s JAT side).

Runs ONLY under JAT's own venv (transformers 4.x and the `jat` package at commit
834b49c0ea28ba27cd7e0283a73b7c4f852ef622 installed with --no-deps; how to build it:
`benchmarks/jat_reference.py`). `model_throughput.py` starts it once per measurement, after our model
has trained, with the plan that run recorded: per optimizer step the suite, the windows' real lengths
and the padded length. This script builds JAT's `JatModel` with the same backbone (hidden size,
layers, heads, global/local attention with a 256-token window, 512 positions) and JAT's own encoder
and decoder sizes (GPT-2's 50,257-token vocabulary, `max_discrete_value` 148 + 64, `max_continuous_size`
377, as JAT's `generate_config_jat.py`), then trains it for the same steps on random tensors of the
shapes JAT's processor hands the model for those windows:

- metaworld / mujoco: `continuous_observations` (B, T, obs), `continuous_actions` (B, T, act);
- babyai: `discrete_observations` (B, T, 148 + 64) — the grid's ints then the mission's 64 GPT-2 ids —
  and `discrete_actions` (B, T);
- `rewards` (B, T) and `attention_mask` (B, T), 1 on each window's real steps (JAT pads at the end).

Random values are enough for a throughput measurement: the work depends on shapes only. One step is
forward with `return_loss=True`, backward, gradient clipping (1.0) and AdamW, split into the plan's
micro-batches; tokens are counted as ours are (one observation and one action per real step).
Building the batch tensors is not timed (ours times its sampling and decoding). It prints one JSON
line: tokens/s, parameters, peak resident set (`ru_maxrss`) and its rise over the set before the
model was built.

    /tmp/jat-venv/bin/python benchmarks/jat_throughput_child.py --plan plan.json --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
from harness import peak_rss_mb, rss_mb  # standard library only, for JAT's venv (next to this file)
from jat_reference import import_torchvision_without_ops  # JAT's torchvision workaround

GRID_INTS, TEXT_IDS = 148, 64  # BabyAI's discrete observation as JAT's processor builds it
GPT2_VOCAB = 50257


def _batch(step: dict, vocab: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    lengths = step["lengths"]
    b, t = len(lengths), step["padded"]
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    batch = {"rewards": torch.randn(b, t, generator=generator), "attention_mask": mask}
    if step["suite"] == "babyai":
        grid = torch.randint(0, 16, (b, t, GRID_INTS), generator=generator)
        text = torch.randint(0, vocab, (b, t, TEXT_IDS), generator=generator)
        batch["discrete_observations"] = torch.cat((grid, text), dim=-1)
        batch["discrete_actions"] = torch.randint(0, step["actions"], (b, t), generator=generator)
    else:
        batch["continuous_observations"] = torch.randn(b, t, step["obs_dim"], generator=generator)
        batch["continuous_actions"] = torch.randn(b, t, step["act_dim"], generator=generator)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, required=True, help="JSON written by model_throughput.py")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's)")
    parser.add_argument("--vocab-size", type=int, default=GPT2_VOCAB, help="JAT's token vocabulary")
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import_torchvision_without_ops()
    from jat.configuration_jat import JatConfig
    from jat.modeling_jat import JatModel

    before = rss_mb()  # after the imports, as ours is taken after importing the training code

    layers = plan["num_layers"]
    config = JatConfig(
        vocab_size=args.vocab_size,
        max_position_embeddings=512,
        hidden_size=plan["hidden_size"],
        num_layers=layers,
        attention_types=[[["global", "local"], layers // 2]],
        num_heads=plan["num_heads"],
        window_size=256,
        max_discrete_value=GRID_INTS + TEXT_IDS,
    )
    model = JatModel(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    if plan["precision"] == "bf16":
        autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    elif plan["precision"] == "fp32":
        autocast = contextlib.nullcontext()
    else:
        raise SystemExit(f"precision {plan['precision']} is not measured on JAT's side (CPU: fp32, bf16)")
    generator = torch.Generator().manual_seed(0)
    seconds, tokens = 0.0, 0
    for step in plan["steps"]:
        batch = _batch(step, args.vocab_size, generator)
        n = plan["grad_accum"]
        per = len(step["lengths"]) // n
        parts = [{k: v[i * per : (i + 1) * per] for k, v in batch.items()} for i in range(n)]
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for part in parts:
            with autocast:
                out = model(**part, return_loss=True)
            (out.loss.float() / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seconds += time.perf_counter() - start
        tokens += 2 * sum(step["lengths"])
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "tokens_per_second": tokens / max(seconds, 1e-9),
                "tokens": tokens,
                "parameters": sum(p.numel() for p in model.parameters()),
                "peak_mb": peak,
                "rise_mb": peak - before,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
