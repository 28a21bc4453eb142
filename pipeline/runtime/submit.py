"""`pipeline submit`: run any stage as a Ray cluster batch job (Ray Jobs API).

The job's entrypoint is the same `pipeline ...` command a user runs locally; inside the
job, `RAY_ADDRESS` is set, so stages join the cluster instead of starting a local one.
The CLI parses the command's arguments before calling `submit`, so a typo fails before anything
reaches the cluster (this module stays below the CLI: it never imports it).
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from dataclasses import dataclass

from pipeline.configs.datasets import SubmitConfig
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
FINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
AGENT_WAIT_S = 120


@dataclass(frozen=True)
class SubmitResult:
    job_id: str
    status: str
    exit_code: int | None = None
    """The stage's own exit code on the cluster, when the job ran to its end (2: bad input)."""
    reason: str = ""
    """For a failed job: the last line of its log, or Ray's message when it never started."""
    address: str = ""

    def failure_line(self) -> str:
        """One line for a job that did not succeed: its cause, and where the whole log is."""
        code = f", exit {self.exit_code}" if self.exit_code is not None else ""
        return (
            f"job {self.job_id} {self.status}{code}: {self.reason or 'no log'} "
            f"(whole log: ray job logs {self.job_id} --address {self.address})"
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _dashboard(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS") or DEFAULT_DASHBOARD
    if not address.startswith(("http://", "https://")):
        raise PipelineError(
            f"job submission needs the dashboard address (http://HEAD:8265), got {address!r}: pass --address"
        )
    return address


def submit(config: SubmitConfig) -> SubmitResult:
    """Submit the command as a Ray job; with `wait`, stream its logs and return its final status."""
    from ray.job_submission import JobSubmissionClient

    address = _dashboard(config.address)
    try:
        client = JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PipelineError(
            f"cannot reach the Ray job server at {address}: {exc} (is the cluster up?)"
        ) from exc
    entrypoint = shlex.join(["pipeline", *config.command])
    runtime_env = {"env_vars": {name: os.environ[name] for name in config.env}} if config.env else None
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint, submission_id=config.job_id, runtime_env=runtime_env
            )
            break
        except RuntimeError as exc:
            # A head that has just started answers before its job agent is up: wait for it.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise PipelineError(f"the Ray job server at {address} refused the job: {exc}") from exc
            time.sleep(2.0)
    log.info("submitted %s as job %s to %s", entrypoint, job_id, address)
    if not config.wait:
        return SubmitResult(job_id, str(client.get_job_status(job_id)))
    printed = 0
    while True:
        status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > printed:
            print(logs[printed:], end="", flush=True)
            printed = len(logs)
        if status in FINAL:
            break
        time.sleep(1.0)
    if status == "SUCCEEDED":
        return SubmitResult(job_id, status, 0, address=address)
    info = client.get_job_info(job_id)
    exit_code = getattr(info, "driver_exit_code", None)
    reason = _last_line(logs) or " ".join((info.message or "").split())
    return SubmitResult(job_id, status, exit_code, reason, address)
