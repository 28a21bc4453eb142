"""Acting speed: KV-cached decoding (`IncrementalDecoder`) against a full forward pass per step.

Both act on the same real env observations (Meta-World reach and BabyAI go-to, stepped with a
random policy so no trained model is needed) with the same randomly initialised model at
JAT's context (256 steps): the cached decoder feeds two tokens per step and re-encodes half
the context when it is full; the naive loop re-runs the whole window (up to 256 steps, 512
tokens) at every step, which is what acting costs without a cache. Steps/s are medians over
repeats, modes interleaved.

    .venv/bin/python benchmarks/model_decode.py
    .venv/bin/python benchmarks/model_decode.py --size small --steps 400
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque

import numpy as np
import torch
from harness import make_console
from rich.table import Table

from pipeline.model.configuration import make_config
from pipeline.model.inference import IncrementalDecoder, observation_inputs
from pipeline.model.modeling import JatModel
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task


def _trajectory(config: str, steps: int) -> list[tuple[object, float, object]]:
    """(observation, previous reward, action) triples of real random-policy steps, resetting as needed."""
    spec = get_task(config)
    env = make_env(spec)
    env.action_space.seed(0)
    out, (observation, _), reward = [], env.reset(seed=0), 0.0
    while len(out) < steps:
        action = env.action_space.sample()
        out.append((observation, reward, action))
        observation, reward, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            observation, _ = env.reset()
            reward = 0.0
    env.close()
    return out


def _cached(model: JatModel, config: str, tokenizer: MissionTokenizer, steps: list) -> float:
    decoder = IncrementalDecoder(model, get_task(config), tokenizer)
    start = time.perf_counter()
    for observation, reward, action in steps:
        decoder.observe(observation, reward)
        decoder.record_action(action)
    return len(steps) / (time.perf_counter() - start)


@torch.no_grad()
def _full_window(model: JatModel, config: str, tokenizer: MissionTokenizer, steps: list) -> float:
    spec = get_task(config)
    context = model.config.context_for(spec.suite)
    window: deque = deque(maxlen=context)
    start = time.perf_counter()
    for observation, reward, action in steps:
        inputs = observation_inputs(spec, observation, tokenizer)
        inputs["rewards"] = torch.tensor([[float(reward)]])
        window.append((model.embed_observations(**inputs), action))
        obs = torch.cat([o for o, _ in window], dim=1)
        if spec.action.type == "continuous":
            acts = torch.tensor(np.stack([a for _, a in window]), dtype=torch.float32)[None]
            act = model.embed_actions(continuous_actions=acts)
        else:
            act = model.embed_actions(discrete_actions=torch.tensor([[int(a) for _, a in window]]))
        hidden = model.run_backbone(model.interleave(obs, act)).last_hidden_state
        model.predict_actions(hidden[:, -2], spec.action.dim if spec.action.type == "continuous" else None)
    return len(steps) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "jat"])
    parser.add_argument("--tasks", default="metaworld-reach,babyai-go-to")
    parser.add_argument("--steps", type=int, default=300, help="env steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (evaluate's default is 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = MissionTokenizer.train([])
    torch.manual_seed(0)
    model = JatModel(make_config(args.size, text_vocab_size=tokenizer.vocab_size)).eval()
    table = Table(
        title=f"acting speed, {args.size} model, context 256 steps, {torch.get_num_threads()} threads"
    )
    for column in ("task", "cached steps/s", "full-window steps/s", "speed-up"):
        table.add_column(column)
    for config in args.tasks.split(","):
        steps = _trajectory(config, args.steps)
        cached, full = [], []
        for _ in range(args.repeats):
            cached.append(_cached(model, config, tokenizer, steps))
            full.append(_full_window(model, config, tokenizer, steps))
        c, f = statistics.median(cached), statistics.median(full)
        table.add_row(config, f"{c:.0f}", f"{f:.0f}", f"{c / f:.1f}x")
    make_console().print(table)


if __name__ == "__main__":
    main()
