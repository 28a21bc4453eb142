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
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.configs.model import TrainModelConfig
from pipeline.errors import PipelineError
from pipeline.model.checkpoints import (
    CHECKPOINT,
    check_out,
    clear_out,
    read_checkpoint,
    save_model,
    write_checkpoint,
)
from pipeline.model.configuration import check_task_fits, make_config
from pipeline.model.data import (
    EpisodeTable,
    Part,
    TaskData,
    TaskMixture,
    config_names,
    jat_loss_weight,
    load_tables,
)
from pipeline.model.devices import autocast, resolve_device
from pipeline.model.modeling import JatModel
from pipeline.model.reporting import plot_losses, read_csv, write_csv, write_json
from pipeline.model.steps import (
    loss_counts,
    lr_schedule,
    micro_batches,
    recent_losses,
    to_device,
)
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.runtime import faults
from pipeline.runtime.executor_train import DataParallelRequest, TrainWorker, run_data_parallel
from pipeline.runtime.progress import Bars
from pipeline.suites import get_suite, suite_names
from pipeline.tasks.registry import TaskSpec, get_task

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
    "precision",  # autocast changes every loss and update; --device does not need to match
    "grad_accum",  # the effective batch, and which windows each step draws
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
    return config_names(config.data)


@torch.no_grad()
def _test_losses(
    model: JatModel, mixture: TaskMixture, config: TrainModelConfig, device: torch.device
) -> dict[str, float]:
    """Mean loss on the same test-split windows at every checkpoint (fixed RNG)."""
    if config.eval_batches == 0:
        return {}
    model.eval()
    losses = {}
    for task in mixture.tasks:
        if task.test is None or len(task.test) == 0:
            continue
        rng = np.random.default_rng(config.seed + 1)
        values = []
        for _ in range(config.eval_batches):
            batch = to_device(task.sample(rng, config.batch_size, "test"), device)
            with autocast(device, config.precision):
                values.append(float(model(**batch).loss))
        losses[task.config] = float(np.mean(values))
    model.train()
    return losses


def _fresh_model(
    config: TrainModelConfig, specs: list[TaskSpec], tables: dict
) -> tuple[JatModel, MissionTokenizer]:
    """A new tokenizer (trained on the BabyAI missions in the data) and a freshly initialised model."""
    torch.manual_seed(config.seed)
    missions = {
        m
        for s in specs
        if get_suite(s.suite).layout.text
        for m in EpisodeTable(tables[s.config][0], s, None).missions()
    }
    tokenizer = MissionTokenizer.train(sorted(missions))
    contexts = {name: getattr(config, get_suite(name).context_option) for name in suite_names()}
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
        device: torch.device,
        worker: TrainWorker | None = None,
    ) -> None:
        self.config, self.out, self.model, self.tokenizer, self.mixture = (
            config,
            out,
            model,
            tokenizer,
            mixture,
        )
        self.device = device
        # the compiled module shares the model's parameters; saving and test losses use the plain one
        self.forward = torch.compile(model) if config.compile else model
        # data-parallel: this rank's slice of every global batch, gradients averaged by DDP
        self.part = Part(worker.rank, worker.world_size) if worker is not None else Part()
        if self.part.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            # one task per batch: the other modalities' encoders and decoders get no gradient
            ddp = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=True
            )
            self.forward = torch.compile(ddp) if config.compile else ddp
        # fp16's small range underflows gradients: scale the loss up, unscale before clipping
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        warmup = config.warmup_steps if config.warmup_steps is not None else max(1, config.steps // 20)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_schedule(warmup, config.steps))
        self.rng = np.random.default_rng(config.seed)
        self.step = 0
        self.records: list[dict[str, Any]] = []
        self.test_records: list[dict[str, Any]] = []

    def restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.step = state["step"]
        self.records = [r for r in read_csv(self.out / "losses.csv") if int(r["step"]) <= self.step]
        self.test_records = [r for r in read_csv(self.out / "test_losses.csv") if int(r["step"]) <= self.step]

    def train_step(self) -> tuple[float, int]:
        """One optimizer step on one task's batch; returns its (unweighted) loss and token count.

        The batch (batch_size x grad_accum windows) is drawn at once and split into micro-batches,
        so a run with --grad-accum N draws exactly the windows of a run with an N times larger
        --batch-size, and (by `loss_counts`) computes its loss and gradient."""
        task, batch = self.mixture.sample(
            self.rng, self.config.batch_size * self.config.grad_accum, part=self.part
        )
        parts = micro_batches(batch, self.config.grad_accum)
        counts = [loss_counts(part, self.model.config) for part in parts]
        # over all ranks' windows: each rank's share of the global means, times the world size that
        # DDP's gradient averaging divides by, sums to the gradient of the whole global batch
        totals = self.sum_over_ranks([sum(c) for c in zip(*counts, strict=True)])
        total_actions, total_observations = (max(1, int(n)) for n in totals)
        kappa = self.model.config.observation_loss_coef
        self.optimizer.zero_grad(set_to_none=True)
        action_loss = observation_loss = 0.0
        for part, (actions, observations) in zip(parts, counts, strict=True):
            with autocast(self.device, self.config.precision):
                output = self.forward(**to_device(part, self.device))
            action = output.action_loss.float() * (actions / total_actions)
            observation = output.observation_loss.float() * (observations / total_observations)
            loss = kappa * observation + (1.0 - kappa) * action  # the model's own formula
            self.scaler.scale(loss * (task.loss_weight * self.part.world)).backward()
            action_loss += float(action.detach())
            observation_loss += float(observation.detach())
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        action_loss, observation_loss, steps = self.sum_over_ranks(
            [action_loss, observation_loss, int(batch["mask"].sum())]
        )
        tokens = 2 * int(steps)  # one observation and one action token per real step
        loss = kappa * observation_loss + (1.0 - kappa) * action_loss
        self.records.append(
            {
                "step": self.step,
                "config": task.config,
                "loss": round(loss, 6),
                "action_loss": round(action_loss, 6),
                "observation_loss": round(observation_loss, 6),
                "tokens": tokens,
                "lr": self.scheduler.get_last_lr()[0],
            }
        )
        return loss, tokens

    def sum_over_ranks(self, values: list[float]) -> list[float]:
        """`values` summed over the data-parallel workers (as they are without any)."""
        if self.part.world == 1:
            return values
        summed = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(summed)
        return summed.tolist()

    def checkpoint(self) -> dict[str, float]:
        """Test losses, CSVs, the loss plot, then the checkpoint itself."""
        losses = _test_losses(self.model, self.mixture, self.config, self.device)
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
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "grad_scaler": self.scaler.state_dict(),
            "config": _jsonable(self.config),
        }
        write_checkpoint(self.out, self.model, self.tokenizer, state)
        return losses


def train_model(config: TrainModelConfig, worker: TrainWorker | None = None) -> TrainModelResult:
    """Train (or resume), checkpointing as it goes; the final model lands in `config.out`.

    With `--num-workers` this process only launches the Ray Train workers (`_train_data_parallel`),
    each of which runs this function with its `worker`: it then trains in a scratch folder that rank 0
    reports as the run's checkpoint, instead of in `config.out`."""
    if config.num_workers and worker is None:
        return _train_data_parallel(config)
    if worker is None:
        device = resolve_device(config.device, config.precision)  # before any work: one line if impossible
    else:  # the device Ray Train gave this worker
        resolve_device("cuda" if worker.device.startswith("cuda") else "cpu", config.precision)
        device = torch.device(worker.device)
    rank0 = worker is None or worker.rank == 0
    if worker is None:
        out = Path(config.out).expanduser().resolve()
    else:  # a restored checkpoint folder has OUT's layout
        out = worker.restored or Path(tempfile.mkdtemp(prefix="jat-train-"))
    configs = _resolve_configs(config)
    specs = [get_task(c) for c in configs]  # unknown names fail before any loading
    if worker is None:
        checkpoint = check_out(out, resume=config.resume, overwrite=config.overwrite)
    else:
        checkpoint = out / CHECKPOINT if worker.restored else None
    if config.threads:
        torch.set_num_threads(config.threads)
    tables = load_tables(config.data, configs)
    state: dict[str, Any] = {}
    if checkpoint is not None:
        model, tokenizer, state = read_checkpoint(checkpoint, device)
        defaults = {f.name: f.default for f in dataclasses.fields(TrainModelConfig)}  # older checkpoints
        changed = [k for k in RESUME_FIXED if state["config"].get(k, defaults[k]) != _jsonable(config).get(k)]
        if changed:
            raise PipelineError(
                f"cannot resume {out}: {', '.join(changed)} differ from the checkpoint's run "
                "(keep them, or start afresh with --overwrite)"
            )
    else:
        model, tokenizer = _fresh_model(config, specs, tables)
        model.to(device)
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
    log.info(
        "model %s: %.2fM parameters on %s (%s, %d micro-batch(es) per step); tasks %s",
        config.size,
        parameters / 1e6,
        device,
        config.precision,
        config.grad_accum,
        ", ".join(configs),
    )
    run = _Run(config, out, model, tokenizer, mixture, device, worker)

    def checkpoint_and_report(final: bool = False) -> dict[str, float]:
        losses = run.checkpoint() if rank0 else {}
        if worker is not None and not final:  # every rank reports (a barrier); rank 0 with its folder
            worker.report({"step": run.step}, out if rank0 else None)
        return losses

    if state:
        run.restore(state)
        log.info("resuming %s at step %d", out, run.step)

    model.train()
    display = Bars(
        config.progress and worker is None,
        lambda rp: (
            rp.TextColumn("train-model"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} tokens/s"),
            rp.TimeElapsedColumn(),
        ),
    )
    display.add("train", config.steps, completed=run.step, loss=float("nan"), rate=0.0)
    started = time.monotonic()
    train_seconds, tokens, stopped_early = 0.0, 0, False
    test_losses: dict[str, float] = {}
    try:
        while run.step < config.steps:
            if config.max_minutes is not None and any(  # the ranks stop together
                run.sum_over_ranks([float(time.monotonic() - started > 60 * config.max_minutes)])
            ):
                stopped_early = True
                log.info("stopping at step %d: --max-minutes %.1f reached", run.step, config.max_minutes)
                break
            tick = time.monotonic()
            loss, batch_tokens = run.train_step()
            faults.hit("model.train_step")  # a worker lost mid-run (killed, out of memory, its node)
            train_seconds += time.monotonic() - tick
            tokens += batch_tokens
            display.update("train", completed=run.step, loss=loss, rate=tokens / max(train_seconds, 1e-9))
            if run.step % config.checkpoint_every == 0 and run.step < config.steps:
                test_losses = checkpoint_and_report()
        if not state or run.step > state["step"]:
            test_losses = checkpoint_and_report(final=True)
    finally:
        display.close()
    if rank0:
        save_model(out, model, tokenizer)
    result = TrainModelResult(
        out=str(out),
        step=run.step,
        parameters=parameters,
        seconds=train_seconds,
        tokens=tokens,
        tokens_per_second=tokens / max(train_seconds, 1e-9),
        stopped_early=stopped_early,
        train_losses=recent_losses(run.records),
        test_losses=test_losses,
    )
    if rank0:
        write_json(out / "training.json", {"config": _jsonable(config), "result": dataclasses.asdict(result)})
    if worker is not None:
        worker.report({"step": run.step}, out if rank0 else None)  # the final model, for the driver
        shutil.rmtree(out, ignore_errors=True)
    return result


def _worker_main(worker: TrainWorker, config: TrainModelConfig) -> None:
    """One Ray Train worker's run (module level: Ray pickles it by reference)."""
    train_model(config, worker)


def _train_data_parallel(config: TrainModelConfig) -> TrainModelResult:
    """Launch `config.num_workers` Ray Train workers; the model they end with lands in `config.out`."""
    out = Path(config.out).expanduser().resolve()
    for name in _resolve_configs(config):
        get_task(name)  # unknown names fail before Ray starts
    if not config.resume:
        check_out(out, resume=False, overwrite=config.overwrite)
    request = DataParallelRequest(
        num_workers=config.num_workers,
        gpus_per_worker=config.gpus_per_worker,
        storage=config.storage or str(out / "ray-checkpoints"),
        resume=config.resume,
        overwrite=config.overwrite,
        placement_timeout_s=config.placement_timeout_s,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".tmp-{out.name}-{uuid.uuid4().hex[:8]}"
    try:
        run_data_parallel(_worker_main, config, request, staging)
        clear_out(out)
        for path in staging.iterdir():
            target = out / path.name
            if target.is_dir():
                shutil.rmtree(target)
            path.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    import json

    result = json.loads((out / "training.json").read_text())["result"]
    return TrainModelResult(**{**result, "out": str(out)})


def _jsonable(config: TrainModelConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["configs"], data["weights"] = list(config.configs), list(config.weights)
    return data
