"""Config of `pipeline publish`, and the checks of Hub names it runs before any upload."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.configs import megabytes, option, positive
from pipeline.errors import PipelineError

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
BRANCH = re.compile(r"[A-Za-z0-9][\w./-]{0,99}")
DEFAULT_FOLDER_SUFFIX = "-publish"
DEFAULT_MAX_COMMIT_MB = 1024


def check_repo_id(repo_id: str) -> None:
    """Refuse a repo id the Hub would refuse, before any request."""
    if not REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise PipelineError(
            f"malformed repo id {repo_id!r}: use ORG/NAME "
            "(letters, digits, '-', '_', '.'; e.g. my-org/jat-dataset)"
        )


def check_branch(branch: str) -> None:
    """Refuse a branch name git would refuse, before any request."""
    if not BRANCH.fullmatch(branch) or ".." in branch or branch.endswith((".lock", "/")):
        raise PipelineError(f"invalid --revision {branch!r}: give a branch name such as main or v2")


@dataclass(frozen=True)
class PublishConfig:
    """Push validated configs to a Hub dataset repo (or a folder) with a dataset card.

    Validate, then upload configs in bounded commits with a generated card; re-running resumes and
    uploads only what is missing. Hub endpoint: HF_ENDPOINT; token: HF_TOKEN or `hf auth login`.
    Without --repo-id, writes the same layout to --to-folder.
    """

    data_dir: str = option(positional=True, metavar="DIR")
    """The dataset to publish: a folder or URI written by `pipeline rollout`."""
    repo_id: str | None = None
    """Hub dataset repo ORG/NAME; without it the layout goes to --to-folder."""
    configs: tuple[str, ...] = ()
    """Comma-separated configs to publish; default: every config of DIR. The target's other configs
    are kept."""
    private: bool = False
    """Create the repo private (an existing repo keeps its visibility)."""
    revision: str | None = None
    """Branch to commit to (created from main if missing); default main."""
    to_folder: str | None = None
    """Write the publishable layout to this folder instead; default without --repo-id: DIR-publish."""
    max_commit_files: int = 100
    """At most this many files per commit: bounded commits keep every request small and retryable."""
    max_commit_bytes: int = option(
        DEFAULT_MAX_COMMIT_MB * 1024 * 1024,
        flag="--max-commit-mb",
        parse=megabytes,
        metavar="MB",
        default_text=f"{DEFAULT_MAX_COMMIT_MB} MB",
    )
    """At most this much of new files per commit (a single larger file still gets its own commit)."""
    xet: bool = option(
        True,
        flag="--no-xet",
        negated="Upload through plain LFS, not Xet (servers without Xet, such as the tests' local Hub; "
        "HF_HUB_DISABLE_XET=1 does the same)",
    )
    """Let huggingface_hub use Xet storage when installed."""
    progress: bool = option(True, negated="Log lines only, no progress bar")
    """A progress bar of the bytes written."""
    clips: bool = option(
        True, negated="Draw no clips; the clips of the configs published are removed from the card"
    )
    """Show a short GIF of each config's first episode on the card (meta/<config>/episode.gif, drawn
    by re-simulation; MuJoCo and Meta-World need MUJOCO_GL=osmesa with libosmesa6, else get none)."""

    def __post_init__(self) -> None:
        if not self.data_dir:
            raise PipelineError("give the dataset folder to publish (DATA_DIR)")
        if self.repo_id is not None and self.to_folder is not None:
            raise PipelineError(
                "give --repo-id (publish to the Hub) or --to-folder (write a folder), not both"
            )
        if self.repo_id is not None:
            check_repo_id(self.repo_id)
        elif self.private or self.revision:
            raise PipelineError("--private and --revision apply to the Hub: give --repo-id ORG/NAME as well")
        if self.revision is not None:
            check_branch(self.revision)
        positive("max_commit_files", self.max_commit_files)
        if not isinstance(self.max_commit_bytes, int) or self.max_commit_bytes < 1:
            raise PipelineError(f"--max-commit-mb must be at least 1, got {self.max_commit_bytes} bytes")
        if len(set(self.configs)) != len(self.configs):
            raise PipelineError(f"--configs lists a config twice: {', '.join(self.configs)}")

    @property
    def folder(self) -> str:
        """Where the folder target writes."""
        return self.to_folder or self.data_dir.rstrip("/") + DEFAULT_FOLDER_SUFFIX
