"""The model folder: final model files, and the one checkpoint a run can resume from.

`OUT/checkpoint/` holds the model, its tokenizer and `trainer_state.pt` (optimizer, scheduler
and RNG states, step, the run's settings). A new checkpoint is written to a temporary folder
and swapped in by renames, and the final model's files are moved into `OUT` only once
`save_pretrained` has written them all: an interruption never leaves a half-written model.
A kill between the swap's two renames leaves the previous checkpoint under its `.old-` name;
`check_out` puts it back before resuming. A run killed before its first checkpoint leaves only
temporary files, and `--resume` then starts it (what a retried job needs: the same command).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.runtime import faults

if TYPE_CHECKING:  # torch and the model load only where a checkpoint is read or written:
    import torch  # `publish-model` needs the file names alone (13 s less start-up on 2 busy cores)

    from pipeline.model.modeling import JatModel
    from pipeline.model.tokenizer import MissionTokenizer

CHECKPOINT = "checkpoint"
STATE_FILE = "trainer_state.pt"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
RUN_FILES = ("training.json", "losses.csv", "test_losses.csv", "losses.png")
OLD_PREFIX, TMP_PREFIX = f".old-{CHECKPOINT}-", ".tmp-"


def _temporary(name: str) -> bool:
    """A temporary name of ours: a checkpoint or model being written, one moved aside, a CSV or plot."""
    return name.startswith((TMP_PREFIX, OLD_PREFIX)) or (name.startswith(".") and name.endswith(".tmp"))


def _leftover(name: str) -> bool:
    """What a run killed before its first checkpoint leaves: temporaries, loss records."""
    return _temporary(name) or name in RUN_FILES


def _restore_moved_aside(out: Path) -> None:
    """Put back the previous checkpoint a kill left moved aside mid-swap (no `checkpoint/` then)."""
    if (out / CHECKPOINT).exists() or not out.is_dir():
        return
    aside = [p for p in out.iterdir() if p.name.startswith(OLD_PREFIX) and (p / STATE_FILE).is_file()]
    if aside:
        os.replace(max(aside, key=lambda p: p.stat().st_mtime), out / CHECKPOINT)


def check_out(out: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run; refuses before any work is done."""
    checkpoint = out / CHECKPOINT
    if resume:
        _restore_moved_aside(out)
        if not checkpoint.exists() and (not out.exists() or all(_leftover(p.name) for p in out.iterdir())):
            return None  # killed before its first checkpoint: --resume starts the run
        if not (checkpoint / STATE_FILE).exists():
            raise PipelineError(
                f"nothing to resume: {checkpoint} has no {STATE_FILE} (drop --resume to start)"
            )
        return checkpoint
    if out.exists() and any(out.iterdir()) and not overwrite:
        hint = "pass --resume to continue it, " if (checkpoint / STATE_FILE).exists() else ""
        raise PipelineError(
            f"{out} is not empty: {hint}pass --overwrite to replace it, or choose another --out"
        )
    return None


def clear_out(out: Path) -> None:
    """Remove an earlier run's files (on --overwrite, once the new run is ready to start)."""
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    for name in (*MODEL_FILES, *RUN_FILES):
        (out / name).unlink(missing_ok=True)
    for path in out.iterdir() if out.is_dir() else ():  # temporaries of a killed run
        if _temporary(path.name):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def save_model(target: Path, model: JatModel, tokenizer: MissionTokenizer) -> None:
    """save_pretrained into a temporary folder, then move the files into `target`."""
    tmp = target.parent / f".tmp-{uuid.uuid4().hex[:8]}"
    model.save_pretrained(tmp)
    tokenizer.save(tmp)
    target.mkdir(parents=True, exist_ok=True)
    for path in tmp.iterdir():
        os.replace(path, target / path.name)
    tmp.rmdir()


def write_checkpoint(out: Path, model: JatModel, tokenizer: MissionTokenizer, state: dict[str, Any]) -> None:
    """A complete checkpoint folder replaces the previous one only once fully written."""
    tmp = out / f".tmp-{CHECKPOINT}-{uuid.uuid4().hex[:8]}"
    model.save_pretrained(tmp)
    tokenizer.save(tmp)
    import torch

    torch.save(state, tmp / STATE_FILE)
    final, old = out / CHECKPOINT, out / f".old-{CHECKPOINT}-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.replace(final, old)
        faults.hit("model.checkpoint_moved_aside")  # no checkpoint/ until the next rename
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def read_checkpoint(
    checkpoint: Path, device: torch.device | str = "cpu"
) -> tuple[JatModel, MissionTokenizer, dict[str, Any]]:
    """Model (on `device`), tokenizer and trainer state of a checkpoint (our own file: full unpickling
    is safe). The state is mapped to the CPU whatever device wrote it: RNG states must be CPU tensors,
    and `optimizer.load_state_dict` moves its tensors to the parameters' device itself."""
    import torch

    from pipeline.model.modeling import JatModel
    from pipeline.model.tokenizer import MissionTokenizer

    model = JatModel.from_pretrained(checkpoint).to(device)
    tokenizer = MissionTokenizer.load(checkpoint, model.config.max_text_tokens)
    return model, tokenizer, torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)
