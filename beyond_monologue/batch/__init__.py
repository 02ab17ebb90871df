"""Batch client: run one API-format workflow over many jobs on a running ComfyUI.

``python -m beyond_monologue.batch WORKFLOW JOBS --out DIR`` reads jobs from a CSV or JSONL file,
uploads the files each job names, patches the job's values into the workflow by node id and input
name, queues it over ComfyUI's HTTP API, follows it over ``/ws`` and downloads its outputs through
``/view``. An append-only journal in the output folder makes a re-run after a crash, Ctrl-C or a
server restart resume without losing or repeating a job; ``--server`` repeated spreads the jobs
over several servers with that one journal. docs/BATCH.md is the user guide.

Modules, one job each:

* :mod:`.jobs`      -- job file (CSV/JSONL) and column mapping (``--map portrait=12.image``).
* :mod:`.patching`  -- check targets against the workflow and ``/object_info``, coerce values, patch.
* :mod:`.journal`   -- the append-only JSONL journal and its replay into per-job states.
* :mod:`.outputs`   -- which history outputs are downloaded and under which local names.
* :mod:`.progress`  -- tqdm bars over jobs and sampler steps.
* :mod:`.runner`    -- the state machine: submit, follow, download, retry, report; one worker per server.
* :mod:`.servers`   -- per-server state when ``--server`` is repeated.
* :mod:`.evaluation`-- ``--evaluate``: the evaluate command's metrics on each job's videos.
* :mod:`.report`    -- per-job outcomes, the summary and ``batch_report.json``.
* ``__main__``      -- the command line.
"""
