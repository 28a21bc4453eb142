"""`pipeline train-model`: train the thin JAT model on JAT-format datasets.

The loop follows JAT's recipe at small scale: one task per batch, picked by sampling weight;
windows of at most the suite's context; AdamW with warm-up and cosine decay; JAT's per-task
loss multipliers for the MSE tasks. Checkpoints (model, tokenizer, optimizer, scheduler and
RNG states, loss records) are written atomically every `checkpoint_every` steps, so an
interrupted run resumes exactly where its last checkpoint left it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.configs.model import TrainModelConfig
from pipeline.errors import PipelineError
from pipeline.model.checkpoints import check_out, clear_out, read_checkpoint, save_model, write_checkpoint
from pipeline.model.configuration import check_task_fits, make_config
from pipeline.model.data import EpisodeTable, TaskData, TaskMixture, jat_loss_weight, load_tables
from pipeline.model.modeling import JatModel
from pipeline.model.reporting import plot_losses, read_csv, write_csv, write_json
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.registry import TaskSpec, get_task

log = logging.getLogger(__name__)

# Fields that must not change when a run is resumed (steps, out, progress… may).
RESUME_FIXED = (
    "data",
    "configs",
    "weights",
    "size",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "context_steps",
    "atari_context_steps",
    "observation_loss_coef",
    "use_rewards",
    "jat_loss_weights",
    "seed",
)


@dataclass
class TrainModelResult:
    """What a training run did (figures cover this invocation only, not earlier resumed parts)."""

    out: str
    step: int
    parameters: int
    seconds: float
    tokens: int
    tokens_per_second: float
    stopped_early: bool
    train_losses: dict[str, float] = field(default_factory=dict)
    test_losses: dict[str, float] = field(default_factory=dict)


def _resolve_configs(config: TrainModelConfig) -> list[str]:
    if config.configs:
        return list(config.configs)
    import datasets

    try:
        return list(datasets.get_dataset_config_names(config.data))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot list the configs of {config.data}: {exc} (pass --configs)") from exc


def _schedule(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@torch.no_grad()
def _test_losses(model: JatModel, mixture: TaskMixture, config: TrainModelConfig) -> dict[str, float]:
    """Mean loss on the same test-split windows at every checkpoint (fixed RNG)."""
    if config.eval_batches == 0:
        return {}
    model.eval()
    losses = {}
    for task in mixture.tasks:
        if task.test is None or len(task.test) == 0:
            continue
        rng = np.random.default_rng(config.seed + 1)
        values = [
            float(model(**task.sample(rng, config.batch_size, "test")).loss)
            for _ in range(config.eval_batches)
        ]
        losses[task.config] = float(np.mean(values))
    model.train()
    return losses


def _fresh_model(
    config: TrainModelConfig, specs: list[TaskSpec], tables: dict
) -> tuple[JatModel, MissionTokenizer]:
    """A new tokenizer (trained on the BabyAI missions in the data) and a freshly initialised model."""
    torch.manual_seed(config.seed)
    missions = {
        m for s in specs if s.suite == "babyai" for m in EpisodeTable(tables[s.config][0], s, None).missions()
    }
    tokenizer = MissionTokenizer.train(sorted(missions))
    contexts = {suite: config.context_steps for suite in ("babyai", "metaworld", "mujoco")}
    contexts["atari"] = config.atari_context_steps
    model_config = make_config(
        config.size,
        text_vocab_size=tokenizer.vocab_size,
        context_steps=contexts,
        observation_loss_coef=config.observation_loss_coef,
        use_rewards=config.use_rewards,
    )
    return JatModel(model_config), tokenizer


class _Run:
    """A training run's mutable state: what a checkpoint saves and a resume restores."""

    def __init__(
        self,
        config: TrainModelConfig,
        out: Path,
        model: JatModel,
        tokenizer: MissionTokenizer,
        mixture: TaskMixture,
    ) -> None:
        self.config, self.out, self.model, self.tokenizer, self.mixture = (
            config,
            out,
            model,
            tokenizer,
            mixture,
        )
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        warmup = config.warmup_steps if config.warmup_steps is not None else max(1, config.steps // 20)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(warmup, config.steps))
        self.rng = np.random.default_rng(config.seed)
        self.step = 0
        self.records: list[dict[str, Any]] = []
        self.test_records: list[dict[str, Any]] = []

    def restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        self.records = [r for r in read_csv(self.out / "losses.csv") if int(r["step"]) <= self.step]
        self.test_records = [r for r in read_csv(self.out / "test_losses.csv") if int(r["step"]) <= self.step]

    def train_step(self) -> tuple[float, int]:
        """One optimizer step on one task's batch; returns its (unweighted) loss and token count."""
        task, batch = self.mixture.sample(self.rng, self.config.batch_size)
        output = self.model(**batch)
        self.optimizer.zero_grad(set_to_none=True)
        (output.loss * task.loss_weight).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        tokens = 2 * int(batch["mask"].sum())  # one observation and one action token per real step
        loss = float(output.loss.detach())
        self.records.append(
            {
                "step": self.step,
                "config": task.config,
                "loss": round(loss, 6),
                "action_loss": round(float(output.action_loss.detach()), 6),
                "observation_loss": round(float(output.observation_loss.detach()), 6),
                "tokens": tokens,
                "lr": self.scheduler.get_last_lr()[0],
            }
        )
        return loss, tokens

    def checkpoint(self) -> dict[str, float]:
        """Test losses, CSVs, the loss plot, then the checkpoint itself."""
        losses = _test_losses(self.model, self.mixture, self.config)
        self.test_records.extend({"step": self.step, "config": c, "loss": v} for c, v in losses.items())
        write_csv(self.out / "losses.csv", self.records)
        write_csv(self.out / "test_losses.csv", self.test_records, fields=("step", "config", "loss"))
        plot_losses(self.out / "losses.png", self.records, self.test_records)
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "config": _jsonable(self.config),
        }
        write_checkpoint(self.out, self.model, self.tokenizer, state)
        return losses


def train_model(config: TrainModelConfig) -> TrainModelResult:
    """Train (or resume), checkpointing as it goes; the final model lands in `config.out`."""
    out = Path(config.out).expanduser().resolve()
    configs = _resolve_configs(config)
    specs = [get_task(c) for c in configs]  # unknown names fail before any loading
    checkpoint = check_out(out, resume=config.resume, overwrite=config.overwrite)
    if config.threads:
        torch.set_num_threads(config.threads)
    tables = load_tables(config.data, configs)
    state: dict[str, Any] = {}
    if checkpoint is not None:
        model, tokenizer, state = read_checkpoint(checkpoint)
        changed = [k for k in RESUME_FIXED if state["config"].get(k) != _jsonable(config).get(k)]
        if changed:
            raise PipelineError(
                f"cannot resume {out}: {', '.join(changed)} differ from the checkpoint's run "
                "(keep them, or start afresh with --overwrite)"
            )
    else:
        model, tokenizer = _fresh_model(config, specs, tables)
    for spec in specs:
        check_task_fits(model.config, spec)
    weights = config.weights or (1.0,) * len(configs)
    mixture = TaskMixture(
        [
            TaskData(
                spec,
                EpisodeTable(tables[spec.config][0], spec, tokenizer),
                None
                if tables[spec.config][1] is None
                else EpisodeTable(tables[spec.config][1], spec, tokenizer),
                weight,
                jat_loss_weight(spec.config) if config.jat_loss_weights else 1.0,
                model.config.context_for(spec.suite),
            )
            for spec, weight in zip(specs, weights, strict=True)
        ]
    )
    if checkpoint is None:
        clear_out(out)  # only now: a run that fails to start leaves an earlier model in place
    parameters = sum(p.numel() for p in model.parameters())
    log.info("model %s: %.2fM parameters; tasks %s", config.size, parameters / 1e6, ", ".join(configs))
    run = _Run(config, out, model, tokenizer, mixture)
    if state:
        run.restore(state)
        log.info("resuming %s at step %d", out, run.step)

    model.train()
    display = _Display(config.progress, run.step, config.steps)
    started = time.monotonic()
    train_seconds, tokens, stopped_early = 0.0, 0, False
    test_losses: dict[str, float] = {}
    try:
        while run.step < config.steps:
            if config.max_minutes is not None and time.monotonic() - started > 60 * config.max_minutes:
                stopped_early = True
                log.info("stopping at step %d: --max-minutes %.1f reached", run.step, config.max_minutes)
                break
            tick = time.monotonic()
            loss, batch_tokens = run.train_step()
            train_seconds += time.monotonic() - tick
            tokens += batch_tokens
            display.update(run.step, loss, tokens / max(train_seconds, 1e-9))
            if run.step % config.checkpoint_every == 0 and run.step < config.steps:
                test_losses = run.checkpoint()
        if not state or run.step > state["step"]:
            test_losses = run.checkpoint()
    finally:
        display.close()
    save_model(out, model, tokenizer)
    result = TrainModelResult(
        out=str(out),
        step=run.step,
        parameters=parameters,
        seconds=train_seconds,
        tokens=tokens,
        tokens_per_second=tokens / max(train_seconds, 1e-9),
        stopped_early=stopped_early,
        train_losses=_recent_losses(run.records),
        test_losses=test_losses,
    )
    write_json(out / "training.json", {"config": _jsonable(config), "result": dataclasses.asdict(result)})
    return result


def _jsonable(config: TrainModelConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["configs"], data["weights"] = list(config.configs), list(config.weights)
    return data


def _recent_losses(records: list[dict[str, Any]], last: int = 50) -> dict[str, float]:
    """Mean training loss of each task over its last `last` batches."""
    by_task: dict[str, list[float]] = {}
    for row in records:
        by_task.setdefault(row["config"], []).append(float(row["loss"]))
    return {k: float(np.mean(v[-last:])) for k, v in by_task.items()}


class _Display:
    """A rich progress bar with the current loss and tokens/s."""

    def __init__(self, enabled: bool, done: int, total: int) -> None:
        self.progress = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("train-model"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} tokens/s"),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("train", total=total, completed=done, loss=float("nan"), rate=0.0)
        self.progress.start()

    def update(self, step: int, loss: float, rate: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=loss, rate=rate)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
