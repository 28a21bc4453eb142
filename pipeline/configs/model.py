"""Configs of the JAT-model subcommands: train-model, evaluate, convert-jat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pipeline.configs import option, positive
from pipeline.configs.datasets import DEFAULT_BOOTSTRAP_REPS
from pipeline.errors import PipelineError
from pipeline.runtime.executor import PLACEMENT_TIMEOUT_S

ModelSize = Literal["tiny", "small", "jat"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16", "fp16"]


def _check_device(device: str, precision: str) -> None:
    """Choices and the one combination known wrong without looking at the hardware (fp16 on CPU).

    Whether CUDA exists is checked when the run starts (`pipeline.model.devices`), not here: the
    configs import no torch."""
    if device not in get_args(Device):
        raise PipelineError(f"unknown --device {device!r}; choose one of {', '.join(get_args(Device))}")
    if precision not in get_args(Precision):
        raise PipelineError(
            f"unknown --precision {precision!r}; choose one of {', '.join(get_args(Precision))}"
        )
    if device == "cpu" and precision == "fp16":
        raise PipelineError("--precision fp16 needs CUDA: on --device cpu use --precision bf16 or fp32")


def _mixture(items: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """`("babyai-go-to:2", "metaworld-reach")` -> configs and, if any weight is given, one weight each."""
    configs, weights = [], []
    for item in items:
        name, _, weight = item.partition(":")
        try:
            weights.append(float(weight) if weight else 1.0)
        except ValueError as exc:
            raise PipelineError(
                f"bad sampling weight in {item!r}: write CONFIG:WEIGHT, e.g. babyai-go-to:2"
            ) from exc
        configs.append(name)
    return tuple(configs), tuple(weights) if any(":" in i for i in items) else ()


@dataclass(frozen=True)
class TrainModelConfig:
    """Train the thin JAT model on a JAT-format dataset.

    Train a JAT model (GPT-Neo backbone) on configs of a dataset folder, S3 copy or Hub repo;
    checkpoints let --resume continue an interrupted run.
    """

    data: str
    """Dataset folder, s3://bucket/prefix or Hub dataset repo id: its Parquet shards are read as
    training needs them (row groups in a bounded cache), never loaded whole."""
    configs: tuple[str, ...] = ()
    """Comma-separated configs, each optionally CONFIG:WEIGHT (a sampling weight); default: every
    config the dataset declares, equal weights (JAT's default)."""
    weights: tuple[float, ...] = option((), hidden=True)
    """Sampling weight per config, in `configs` order (from CONFIG:WEIGHT); empty: equal weights."""
    size: ModelSize = "tiny"
    """Model size preset (jat: JAT's published backbone, hidden 768, 12 layers, 12 heads)."""
    steps: int = 1000
    """Optimizer steps in total (a resumed run continues up to this)."""
    batch_size: int = 8
    """Windows per batch, all from one task."""
    learning_rate: float = option(3e-4, flag="--lr")
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int | None = None
    """Linear warm-up steps; default 5 % of --steps (cosine decay to 10 % follows)."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    context_steps: int = option(256, flag="--context")
    """Context in steps for every suite but Atari (JAT: 256)."""
    atari_context_steps: int = option(32, flag="--atari-context")
    """Context in steps for Atari (JAT: 32)."""
    observation_loss_coef: float = 0.005
    """κ in κ·observation loss + (1-κ)·action loss (JAT: 0.005)."""
    use_rewards: bool = option(
        True, flag="--no-rewards", negated="Leave rewards out of the model's input (JAT feeds them)"
    )
    """Feed the previous reward with each observation, as JAT does."""
    jat_loss_weights: bool = option(
        True, flag="--no-loss-weights", negated="Weigh every task's loss equally, without JAT's multipliers"
    )
    """Scale each task's loss by JAT's multiplier (Meta-World 50, MuJoCo 10, ...)."""
    out: str = "outputs/model"
    """Model folder (local): final model, checkpoint, loss CSVs and plot."""
    checkpoint_every: int = 250
    """Steps between checkpoints (each also records the test-split loss)."""
    eval_batches: int = 2
    """Test-split batches per task at each checkpoint (0: none)."""
    max_minutes: float | None = None
    """Stop (checkpoint and save) after this much wall time, whatever --steps says."""
    resume: bool = option(False, group="mode")
    """Continue from OUT/checkpoint."""
    overwrite: bool = option(False, group="mode")
    """Replace an existing model in OUT."""
    seed: int = 0
    """Seeds model init, batch sampling and test batches."""
    threads: int | None = None
    """Torch intra-op threads; default: torch's."""
    progress: bool = option(True, negated="Log lines only, no progress bar")
    """A progress bar."""
    # devices and precision (issue 16)
    device: Device = "auto"
    """Where to train: auto (CUDA when torch sees a GPU, else CPU), cpu or cuda. Checkpoints load on
    any device, so a run may resume elsewhere."""
    precision: Precision = "fp32"
    """Autocast precision of the forward pass: fp32 (none), bf16 (CPU or GPU), fp16 (CUDA only, with a
    gradient scaler). Weights and optimizer state stay fp32; a resumed run keeps its precision."""
    grad_accum: int = 1
    """Micro-batches of --batch-size per optimizer step (gradient accumulation): each step trains on
    batch_size x N windows of one task, with the loss one batch that large would have."""
    compile: bool = False
    """torch.compile the training forward pass (inductor; on CPU it needs a C compiler): the first
    steps of each batch shape are slow while it compiles."""

    # data-parallel training on Ray Train (issue 16)
    num_workers: int = 0
    """Data-parallel workers on Ray Train (torch DDP; RAY_ADDRESS or a local cluster); 0 trains in this
    process. --batch-size stays the global batch: each worker decodes its own slice of every batch, so
    a run gives the same batches and, up to float rounding, the same losses with any number of workers."""
    gpus_per_worker: float = 0.0
    """GPUs per worker with --num-workers (1: one each, NCCL); 0 trains on CPUs (gloo)."""
    storage: str | None = None
    """Where Ray Train keeps the run's checkpoints with --num-workers: a folder every node sees, or
    s3://bucket/prefix; --resume continues from the latest one there. Default OUT/ray-checkpoints."""
    placement_timeout_s: float = option(PLACEMENT_TIMEOUT_S, flag="--placement-timeout", metavar="S")
    """With --num-workers: stop with one line when the workers cannot all be placed on Ray for this many
    seconds (GPUs held by another job, a lost node)."""

    def __post_init__(self) -> None:
        _check_device(self.device, self.precision)
        positive("grad_accum", self.grad_accum)
        positive("num_workers", self.num_workers, zero=True)
        if self.num_workers == 0 and (self.gpus_per_worker or self.storage):
            raise PipelineError("--gpus-per-worker and --storage need --num-workers (Ray Train workers)")
        if self.gpus_per_worker < 0 or not self.placement_timeout_s > 0:
            raise PipelineError("--gpus-per-worker must be ≥ 0 and --placement-timeout positive")
        if self.num_workers and self.batch_size % self.num_workers:
            raise PipelineError(
                f"--batch-size {self.batch_size} is the global batch: make it a multiple of "
                f"--num-workers {self.num_workers}"
            )
        if self.num_workers and self.device == "cuda" and not self.gpus_per_worker:
            raise PipelineError("--device cuda with --num-workers needs --gpus-per-worker (e.g. 1)")
        if any(":" in c for c in self.configs):
            if self.weights:
                raise PipelineError("give weights as CONFIG:WEIGHT in --configs or as `weights`, not both")
            configs, weights = _mixture(self.configs)
            object.__setattr__(self, "configs", configs)
            object.__setattr__(self, "weights", weights)
        if self.size not in get_args(ModelSize):
            sizes = ", ".join(get_args(ModelSize))
            raise PipelineError(f"unknown --size {self.size!r}; choose one of {sizes}")
        for name in ("steps", "batch_size", "checkpoint_every"):
            positive(name, getattr(self, name))
        positive("context", self.context_steps)
        positive("atari_context", self.atari_context_steps)
        positive("warmup_steps", self.warmup_steps, zero=True)
        positive("threads", self.threads)
        if self.weights and len(self.weights) != len(self.configs):
            raise PipelineError(
                f"give one weight per config: {len(self.weights)} weights, {len(self.configs)} configs"
            )
        if any(not w > 0 for w in self.weights):
            raise PipelineError(f"sampling weights must be positive, got {list(self.weights)}")
        if not self.learning_rate > 0 or self.weight_decay < 0 or not self.grad_clip > 0:
            raise PipelineError("--lr and --grad-clip must be positive, --weight-decay not negative")
        if not 0 <= self.observation_loss_coef < 1:
            raise PipelineError(
                f"--observation-loss-coef must be in [0, 1), got {self.observation_loss_coef}"
            )
        if self.eval_batches < 0 or (self.max_minutes is not None and not self.max_minutes > 0):
            raise PipelineError("--eval-batches must be ≥ 0 and --max-minutes positive")
        if self.resume and self.overwrite:
            raise PipelineError("--resume and --overwrite contradict each other: choose one")


@dataclass(frozen=True)
class EvaluateConfig:
    """Score a trained model in the real environments.

    Run episodes with the model (KV-cached decoding); report raw, normalised and IQM scores with
    stratified-bootstrap intervals, against a measured random baseline.
    """

    model: str
    """Model folder written by train-model, or ORG/NAME of a model published with publish-model (downloaded
    from the Hub when no such folder exists)."""
    tasks: tuple[str, ...]
    """Comma-separated task configs (babyai-go-to) and/or whole suites (atari, babyai, metaworld,
    mujoco)."""
    episodes: int = 10
    """Episodes per task."""
    seed: int = 0
    """Seeds the episode resets (a stream distinct from rollout's) and action sampling."""
    greedy: bool = False
    """Take the most likely discrete action instead of sampling (JAT's evaluation samples)."""
    max_episode_steps: int | None = None
    """Extra cap on steps per episode, below the env's own limit (an episode cut there counts as
    truncated and its return is partial); default: the env's limit only, as JAT evaluated."""
    random_baseline: bool = option(
        True, flag="--no-baseline", negated="Skip the random-policy baseline (JAT's random scores only)"
    )
    """Also run a uniformly random policy on the same seeds, for a measured baseline."""
    out: str | None = None
    """Where results.json/.csv and scores.png go; default MODEL/eval/<run> (outputs/eval/ORG--NAME/<run>
    for a Hub model), <run> naming the configs evaluated (babyai-go-to+mujoco-hopper; N-tasks-<hash>
    for more than 3), so evaluations of other configs are kept side by side."""
    overwrite: bool = False
    """Replace the results an earlier evaluation of the same configs left in that folder."""
    bootstrap_reps: int = DEFAULT_BOOTSTRAP_REPS
    """Bootstrap resamples for the aggregate intervals."""
    threads: int | None = 1
    """Torch intra-op threads (1 is fastest for acting: one small forward pass per env step, where a
    second thread costs more in synchronisation than it gains)."""
    progress: bool = option(True, negated="Log lines only, no progress bar")
    """A progress bar."""
    # devices, precision and parallel episodes (issue 16)
    device: Device = "auto"
    """Where the model acts: auto (CUDA when torch sees a GPU, else CPU), cpu or cuda."""
    precision: Precision = "fp32"
    """Autocast precision of the model's forward passes: fp32 (none), bf16, fp16 (CUDA only)."""
    workers: int = 0
    """Ray actors playing episodes in parallel, one model copy each (CPU); 0 plays them in this
    process. Per-episode results are the same either way: every episode has its own seeds."""
    address: str | None = None
    """Ray cluster address for --workers; default RAY_ADDRESS, else a local cluster."""
    shared_fs: bool = False
    """Declare that a local --model folder is one filesystem mounted on every node (NFS, ...); without
    it a multi-node cluster refuses a local folder for --workers (a Hub ORG/NAME works anywhere)."""

    def __post_init__(self) -> None:
        _check_device(self.device, self.precision)
        positive("workers", self.workers, zero=True)
        if self.workers > 0 and self.device == "cuda":
            raise PipelineError(
                "--workers actors act on CPU: use --device cuda with --workers 0, or --device cpu/auto"
            )
        if not self.tasks:
            raise PipelineError("name some --tasks (task configs like babyai-go-to, or suites like babyai)")
        positive("episodes", self.episodes)
        positive("max_episode_steps", self.max_episode_steps)
        positive("bootstrap_reps", self.bootstrap_reps)
        positive("threads", self.threads)


@dataclass(frozen=True)
class ConvertJatConfig:
    """Convert JAT's released checkpoint into this model, for `pipeline evaluate`.

    Map every tensor of JAT's own JatModel checkpoint (`huggingface-cli download jat-project/jat`)
    onto the thin model, with JAT's GPT-2 mission encoding, so that it computes what JAT computed.
    """

    checkpoint: str = option(positional=True, metavar="CHECKPOINT_DIR")
    """Folder of JAT's checkpoint: config.json, model.safetensors or pytorch_model.bin (sharded or
    not), and its GPT-2 tokenizer.json."""
    out: str = "outputs/jat"
    """Model folder to write (config.json, model.safetensors, tokenizer.json), read by `pipeline evaluate
    --model`."""
    overwrite: bool = False
    """Replace a non-empty --out."""
