"""``python -m beyond_monologue.batch WORKFLOW JOBS --out DIR``: run a workflow over a job file.

Exit codes: 0 every job done, 1 some job failed, 2 bad workflow/job file/arguments (nothing was
queued), 3 every server was unreachable (re-run the same command to resume), 130 Ctrl-C (same).
``--server`` may be repeated (one per GPU or machine): the jobs are spread over the servers with one
journal. ``--evaluate`` measures each job's videos after its download. See docs/BATCH.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from ..comfyui.comfy_client import ComfyClient, ComfyUnavailable
from .jobs import BatchSetupError, load_mapping_file, parse_mapping, read_jobs
from .patching import load_workflow, prepare_jobs
from .report import REPORT_NAME, summary
from .runner import BatchAborted, BatchOptions, BatchRunner

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_SERVER = "http://127.0.0.1:8188"


def build_parser() -> argparse.ArgumentParser:
    """The command line (documented in docs/BATCH.md)."""
    parser = argparse.ArgumentParser(
        prog="python -m beyond_monologue.batch",
        description="Run an API-format ComfyUI workflow once per job of a CSV/JSONL file on a running ComfyUI, "
                    "download every job's outputs, and resume safely after a crash or a server restart.")
    parser.add_argument("workflow", type=Path, help="API-format workflow JSON (ComfyUI: Workflow > Export (API))")
    parser.add_argument("jobs", type=Path, help="job file: .csv with a header line or .jsonl; a 'name' column is required")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: one sub-folder per job, batch_journal.jsonl, batch_report.json")
    parser.add_argument("--server", action="append", default=None, metavar="URL",
                        help=f"ComfyUI address (default: {DEFAULT_SERVER}); repeat it to spread the jobs over several "
                             "servers (one per GPU or machine) with one journal: a server unreachable for "
                             "--server-timeout is given up and its jobs run on the others, none twice")
    parser.add_argument("--map", action="append", default=[], metavar="COLUMN=NODE_ID.INPUT",
                        help="send a job column to a node input, e.g. --map portrait=12.image (repeatable)")
    parser.add_argument("--map-file", type=Path, help='JSON mapping {"column": "NODE_ID.INPUT", ...}; --map wins')
    parser.add_argument("--queue-ahead", type=int, default=1, help="jobs waiting in ComfyUI's queue besides the running one")
    parser.add_argument("--retries", type=int, default=2,
                        help="extra tries for a job whose prompt the server lost (restart) or that ran out of memory")
    parser.add_argument("--job-timeout", type=float, default=3600.0, help="seconds one job may run (default: %(default)s)")
    parser.add_argument("--server-timeout", type=float, default=300.0,
                        help="seconds a server may stay unreachable before it is given up; with one server (or "
                             "when it was the last) the run stops (default: %(default)s)")
    parser.add_argument("--include-previews", action="store_true", help="also download temp files (previews)")
    parser.add_argument("--skip-failed", action="store_true", help="do not try again jobs that failed in an earlier run")
    parser.add_argument("--redo", action="append", default=[], metavar="NAME",
                        help="run a job again, once (repeatable): re-running the same command after Ctrl-C or an "
                             "abort resumes the request instead of redoing the job again; a job still queued or "
                             "running is followed, not queued twice. After a run that finished, --redo runs it again"),
    parser.add_argument("--dry-run", action="store_true", help="check the workflow and every job against every server, queue nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluate = parser.add_argument_group(
        "metrics", "--evaluate runs python -m beyond_monologue.evaluate's metrics (lip sync, identity, listening) on "
                   "every video a job downloaded; results in the journal, batch_report.json and batch_metrics.csv/.json")
    evaluate.add_argument("--evaluate", action="store_true", help="measure each job's downloaded videos after its download")
    evaluate.add_argument("--comfyui", type=Path, default=None,
                          help="ComfyUI folder (or its models folder) holding models/bm_evaluation (default: the "
                               "ComfyUI this pack is installed in); missing weights: that metric is reported unavailable")
    evaluate.add_argument("--evaluate-talk", metavar="COLUMN",
                          help="job column of the avatar's own speech file (default: a downloaded audio file named "
                               "with 'talk', else the video's soundtrack)")
    evaluate.add_argument("--evaluate-listen", metavar="COLUMN",
                          help="job column of the other person's speech file (default: a downloaded audio file named "
                               "with 'listen', else no listening metrics)")
    evaluate.add_argument("--evaluate-reference", metavar="COLUMN", help="job column of the portrait image (CSIM)")
    return parser


def make_evaluator(args, jobs):
    """The ``--evaluate`` :class:`.evaluation.JobEvaluator` (None without ``--evaluate``).

    Raises:
        BatchSetupError: an ``--evaluate-*`` column that no job has.
    """
    columns = {"--evaluate-talk": args.evaluate_talk, "--evaluate-listen": args.evaluate_listen,
               "--evaluate-reference": args.evaluate_reference}
    known = {name for job in jobs for name in job.columns.values()}
    problems = [f"{flag} {column}: no job has a column of that name" for flag, column in columns.items()
                if column is not None and column not in known]
    if problems:
        raise BatchSetupError(problems)
    if not args.evaluate:
        return None
    from ..evaluate.__main__ import models_of_comfyui  # torch and the metric networks: only when asked
    from .evaluation import JobEvaluator

    return JobEvaluator(models_of_comfyui(args.comfyui), args.evaluate_talk, args.evaluate_listen,
                        args.evaluate_reference)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    servers = list(dict.fromkeys(url.rstrip("/") for url in args.server or [DEFAULT_SERVER]))
    try:
        clients = [ComfyClient(url) for url in servers]
    except ValueError as error:
        print(f"cannot start the batch: --server: {error}", file=sys.stderr)
        return EXIT_SETUP
    try:
        mapping = load_mapping_file(args.map_file) if args.map_file else {}
        mapping.update(parse_mapping(args.map))
        workflow = load_workflow(args.workflow)
        jobs = read_jobs(args.jobs, mapping)
        unknown = sorted(set(args.redo) - {job.name for job in jobs})
        if unknown:
            raise BatchSetupError([f"--redo {name}: no job of that name" for name in unknown])
        for client in clients[1:]:  # every server must have the workflow's nodes (checked on a copy)
            prepare_jobs(workflow, client.object_info(), copy.deepcopy(jobs), args.jobs.resolve().parent)
        prepare_jobs(workflow, clients[0].object_info(), jobs, args.jobs.resolve().parent)
        evaluator = make_evaluator(args, jobs)
    except BatchSetupError as error:
        print(f"cannot start the batch:\n{error}", file=sys.stderr)
        return EXIT_SETUP
    except ComfyUnavailable as error:
        print(f"cannot start the batch: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.dry_run:
        print(f"{len(jobs)} job(s) checked against {', '.join(servers)}: ready to run.")
        return EXIT_OK
    options = BatchOptions(queue_ahead=max(0, args.queue_ahead), retries=max(0, args.retries),
                           job_timeout_s=args.job_timeout, server_timeout_s=args.server_timeout,
                           include_temp=args.include_previews, skip_failed=args.skip_failed,
                           redo=tuple(args.redo), progress=not args.no_progress and sys.stderr.isatty(),
                           evaluator=evaluator)
    runner = BatchRunner(clients if len(clients) > 1 else clients[0], workflow, jobs, args.out, options)
    try:
        outcomes = runner.run()
    except BatchSetupError as error:
        print(f"cannot start the batch:\n{error}", file=sys.stderr)
        return EXIT_SETUP
    except BatchAborted as error:
        print(f"batch stopped, {'every' if len(servers) > 1 else 'the'} server is unreachable: {error}\n"
              "Re-run the same command to resume.", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("\nbatch stopped (Ctrl-C). Re-run the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary(outcomes))
    print(f"report: {args.out / REPORT_NAME}")
    return EXIT_FAILED if any(o.status == "failed" for o in outcomes) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
