"""Per-job outcomes of a batch run: the printed summary and ``batch_report.json``."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_NAME = "batch_report.json"


@dataclass
class JobOutcome:
    """How one job ended in this run.

    Attributes:
        name: the job's name.
        status: ``"done"`` (downloaded in this run), ``"skipped"`` (done in an earlier run),
            ``"failed"`` or ``"pending"`` (the run was aborted before the job ended).
        files: the job's files, relative to the output folder.
        error: why it failed.
        node_errors: ComfyUI's per-node validation errors (a rejected prompt), else empty.
        prompt_id: the prompt id of its last submission.
        submissions: times it was submitted over all runs.
        warnings: things the user should know that did not fail the job.
        server: the ComfyUI address of its last submission (``""`` with one server).
        metrics: ``--evaluate``: one ``{"video", "report"}`` or ``{"video", "error"}`` per
            downloaded video (see :mod:`.evaluation`); None when not evaluated.
    """

    name: str
    status: str
    files: list = field(default_factory=list)
    error: str = ""
    node_errors: dict = field(default_factory=dict)
    prompt_id: str | None = None
    submissions: int = 0
    warnings: list = field(default_factory=list)
    server: str = ""
    metrics: list | None = None


def summary(outcomes: list[JobOutcome]) -> str:
    """Human summary: counts, then one line per failed or pending job (with ComfyUI's node errors)."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "pending")}
    lines = [f"batch: {counts['done']} done, {counts['skipped']} already done, "
             f"{counts['failed']} failed, {counts['pending']} not finished"]
    servers = Counter(o.server for o in outcomes if o.status == "done" and o.server)
    if servers:
        lines.append("  done per server: " + ", ".join(f"{url} {n}" for url, n in sorted(servers.items())))
    for outcome in outcomes:
        for warning in outcome.warnings:
            lines.append(f"  warning {outcome.name}: {warning}")
        if outcome.status == "failed":
            lines.append(f"  FAILED {outcome.name}: {outcome.error}")
            for node_id, info in outcome.node_errors.items():
                for error in info.get("errors", []):
                    lines.append(f"    node {node_id} ({info.get('class_type', '?')}): "
                                 f"{error.get('message', '')} {error.get('details', '')}".rstrip())
        elif outcome.status == "pending":
            lines.append(f"  not finished {outcome.name} (re-run the same command to resume)")
    return "\n".join(lines)


def write_report(out_dir: str | Path, outcomes: list[JobOutcome], aborted: str = "") -> Path:
    """Write ``out_dir/batch_report.json``: ``{"aborted": reason or "", "jobs": [outcome, ...]}``."""
    path = Path(out_dir) / REPORT_NAME
    data = {"aborted": aborted, "jobs": [asdict(o) for o in outcomes]}
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return path
