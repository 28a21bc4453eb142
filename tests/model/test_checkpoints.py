"""`pipeline.model.checkpoints`: the model folder, its one resumable checkpoint, what may be overwritten."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.checkpoints import (
    CHECKPOINT,
    MODEL_FILES,
    STATE_FILE,
    check_out,
    clear_out,
    read_checkpoint,
    save_model,
    write_checkpoint,
)
from pipeline.model.configuration import make_config
from pipeline.model.modeling import JatModel
from pipeline.model.tokenizer import MissionTokenizer

CONTEXTS = {"atari": 4, "babyai": 8, "metaworld": 8, "mujoco": 8}


@pytest.fixture(scope="module")
def tokenizer() -> MissionTokenizer:
    return MissionTokenizer.train(["go to the red ball"], max_tokens=16)


@pytest.fixture(scope="module")
def model(tokenizer) -> JatModel:
    torch.manual_seed(0)
    return JatModel(make_config("tiny", text_vocab_size=tokenizer.vocab_size, context_steps=CONTEXTS)).eval()


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".tmp", ".old")))


def test_a_fresh_run_needs_an_empty_or_absent_folder(tmp_path):
    assert check_out(tmp_path / "new", resume=False, overwrite=False) is None
    assert check_out(tmp_path, resume=False, overwrite=False) is None  # exists, empty
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError) as info:
        check_out(tmp_path, resume=False, overwrite=False)
    assert (
        str(info.value) == f"{tmp_path} is not empty: pass --overwrite to replace it, or choose another --out"
    )
    assert check_out(tmp_path, resume=False, overwrite=True) is None


def test_a_folder_with_a_checkpoint_offers_resume(tmp_path):
    (tmp_path / CHECKPOINT).mkdir()
    (tmp_path / CHECKPOINT / STATE_FILE).write_bytes(b"")
    with pytest.raises(PipelineError, match=r"is not empty: pass --resume to continue it, pass --overwrite"):
        check_out(tmp_path, resume=False, overwrite=False)
    assert check_out(tmp_path, resume=True, overwrite=False) == tmp_path / CHECKPOINT


def test_resume_needs_a_checkpoint_with_its_trainer_state(tmp_path):
    (tmp_path / CHECKPOINT).mkdir()  # a checkpoint folder without its state is not resumable
    with pytest.raises(PipelineError) as info:
        check_out(tmp_path, resume=True, overwrite=False)
    assert str(info.value) == (
        f"nothing to resume: {tmp_path / CHECKPOINT} has no {STATE_FILE} (drop --resume to start)"
    )


def test_clear_out_removes_an_earlier_runs_files_only(tmp_path):
    (tmp_path / CHECKPOINT).mkdir()
    (tmp_path / CHECKPOINT / STATE_FILE).write_bytes(b"x")
    for name in ("config.json", "model.safetensors", "training.json", "losses.csv", "losses.png", "mine.txt"):
        (tmp_path / name).write_text("x")
    clear_out(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    clear_out(tmp_path / "absent")  # creates the folder
    assert (tmp_path / "absent").is_dir()


def test_a_checkpoint_round_trips_model_tokenizer_and_state(tmp_path, model, tokenizer):
    state = {"step": 7, "rng": torch.get_rng_state(), "settings": {"batch_size": 2}}
    write_checkpoint(tmp_path, model, tokenizer, state)
    assert _leftovers(tmp_path) == []
    assert {*MODEL_FILES, STATE_FILE} <= {p.name for p in (tmp_path / CHECKPOINT).iterdir()}
    loaded, loaded_tokenizer, loaded_state = read_checkpoint(tmp_path / CHECKPOINT)
    assert loaded_state["step"] == 7 and loaded_state["settings"] == {"batch_size": 2}
    assert torch.equal(loaded_state["rng"], state["rng"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.config.context_steps == model.config.context_steps
    assert loaded_tokenizer.max_tokens == model.config.max_text_tokens
    assert loaded_tokenizer.encode_one("go to the red ball")[:5].tolist() == (
        tokenizer.encode_one("go to the red ball")[:5].tolist()
    )
    assert check_out(tmp_path, resume=True, overwrite=False) == tmp_path / CHECKPOINT


def test_a_new_checkpoint_replaces_the_previous_one_whole(tmp_path, model, tokenizer):
    write_checkpoint(tmp_path, model, tokenizer, {"step": 1})
    (tmp_path / CHECKPOINT / "from-step-1").write_text("x")
    write_checkpoint(tmp_path, model, tokenizer, {"step": 2})
    assert not (tmp_path / CHECKPOINT / "from-step-1").exists()
    assert read_checkpoint(tmp_path / CHECKPOINT)[2] == {"step": 2}
    assert _leftovers(tmp_path) == []


def test_the_final_model_is_saved_into_the_run_folder(tmp_path, model, tokenizer):
    (tmp_path / "losses.csv").write_text("kept")
    save_model(tmp_path, model, tokenizer)
    assert set(MODEL_FILES) <= {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "losses.csv").read_text() == "kept"
    assert _leftovers(tmp_path) == []
    loaded = JatModel.from_pretrained(tmp_path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert MissionTokenizer.load(tmp_path, 16).vocab_size == tokenizer.vocab_size


class _Killed(BaseException):
    """Stands for the SIGKILL a crash point sends (nothing after it runs: no handler catches it)."""


def _arm(monkeypatch, point: str) -> None:
    """Arm `point` in this process; its SIGKILL becomes `_Killed`, so the test survives it."""
    from pipeline.runtime import faults

    def kill(pid, sig):
        raise _Killed

    monkeypatch.setattr(faults, "_faults", {point: (1, None)})
    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setattr(faults.os, "kill", kill)


def test_a_kill_mid_swap_leaves_the_previous_checkpoint_to_resume_from(
    tmp_path, model, tokenizer, monkeypatch
):
    """Between the swap's two renames there is no checkpoint/: the previous one is put back."""
    write_checkpoint(tmp_path, model, tokenizer, {"step": 1})
    with monkeypatch.context() as patch:
        _arm(patch, "model.checkpoint_moved_aside")
        with pytest.raises(_Killed):
            write_checkpoint(tmp_path, model, tokenizer, {"step": 2})
    assert not (tmp_path / CHECKPOINT).exists() and len(_leftovers(tmp_path)) == 2  # .old- and .tmp-
    assert check_out(tmp_path, resume=True, overwrite=False) == tmp_path / CHECKPOINT
    assert read_checkpoint(tmp_path / CHECKPOINT)[2] == {"step": 1}
    write_checkpoint(tmp_path, model, tokenizer, {"step": 2})  # the resumed run goes on
    assert read_checkpoint(tmp_path / CHECKPOINT)[2] == {"step": 2}


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it(tmp_path, model, tokenizer):
    """What such a run leaves (a checkpoint being written, loss records, a CSV being replaced) is
    cleared, and --resume starts: a retried job runs the same command. Anything else is refused."""
    (tmp_path / ".tmp-checkpoint-1a2b3c4d").mkdir()
    (tmp_path / ".tmp-checkpoint-1a2b3c4d" / "config.json").write_text("{")
    (tmp_path / "losses.csv").write_text("step,config,loss\n1,babyai-go-to,1.0\n")
    (tmp_path / ".test_losses.csv.0a1b2c3d.tmp").write_text("step")
    assert check_out(tmp_path, resume=True, overwrite=False) is None
    assert check_out(tmp_path / "never-started", resume=True, overwrite=False) is None
    clear_out(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="nothing to resume"):
        check_out(tmp_path, resume=True, overwrite=False)
