"""Job files (CSV or JSONL) and the mapping of their columns onto workflow inputs.

A job is one row (CSV) or one JSON object per line (JSONL). The ``name`` column is required: it
names the job's output folder and identifies the job in the journal, so it must be a plain file
name, unique regardless of case (``Job1`` and ``job1`` would share one folder on macOS and
Windows). Every other column is either

* a direct target ``NODE_ID.INPUT_NAME`` (e.g. ``12.seed``; the node id is the key of the node in
  the API-format workflow, the input name may itself contain dots, e.g. ``7.mode.audio_2``), or
* a name mapped to such a target with ``--map portrait=12.image`` or a mapping file
  (``{"portrait": "12.image", ...}``, see :func:`load_mapping_file`).

An empty CSV cell or a JSON ``null`` keeps the workflow's own value. Relative file paths in a job
are relative to the job file's folder.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

NAME_COLUMN = "name"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TARGET_RE = re.compile(r"^([A-Za-z0-9_:-]+)\.(\S+)$")


class BatchSetupError(ValueError):
    """The workflow, the job file, a mapping or a job's values cannot be used.

    Raised before anything is uploaded or queued; the message lists every problem found.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))


@dataclass(frozen=True)
class Target:
    """One input of one node of the API-format workflow: ``inputs[input_name]`` of node ``node_id``."""

    node_id: str
    input_name: str

    def __str__(self) -> str:
        return f"{self.node_id}.{self.input_name}"


@dataclass
class Job:
    """One job of the file.

    Attributes:
        name: unique, file-name-safe job name (output folder, journal key).
        line: line number in the job file (for messages).
        values: raw value per target (str from CSV; any JSON value from JSONL).
        columns: the column each target came from (for messages).
    """

    name: str
    line: int
    values: dict[Target, object] = field(default_factory=dict)
    columns: dict[Target, str] = field(default_factory=dict)


def parse_target(text: str) -> Target | None:
    """``"12.seed"`` -> ``Target("12", "seed")``; None when ``text`` is not ``NODE_ID.INPUT_NAME``."""
    match = _TARGET_RE.match(text.strip())
    return Target(match.group(1), match.group(2)) if match else None


def parse_mapping(pairs: list[str]) -> dict[str, Target]:
    """Parse ``--map COLUMN=NODE_ID.INPUT_NAME`` flags.

    Raises:
        BatchSetupError: a pair without ``=`` or with a target that is not ``NODE_ID.INPUT_NAME``.
    """
    mapping: dict[str, Target] = {}
    problems = []
    for pair in pairs:
        column, sep, target_text = pair.partition("=")
        target = parse_target(target_text) if sep else None
        if not column.strip() or target is None:
            problems.append(f"--map {pair!r}: write COLUMN=NODE_ID.INPUT_NAME, e.g. portrait=12.image")
            continue
        mapping[column.strip()] = target
    if problems:
        raise BatchSetupError(problems)
    return mapping


def load_mapping_file(path: str | Path) -> dict[str, Target]:
    """Read a mapping file: a JSON object ``{"column": "NODE_ID.INPUT_NAME", ...}``.

    Raises:
        BatchSetupError: unreadable file, not a JSON object, or a bad target.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BatchSetupError([f"mapping file {path}: cannot read it as JSON ({error})"]) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise BatchSetupError([f'mapping file {path}: must be a JSON object {{"column": "NODE_ID.INPUT_NAME"}}'])
    return parse_mapping([f"{column}={target}" for column, target in data.items()])


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    """Rows of a CSV (header line first) or JSONL file as ``(line number, {column: value})``."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise BatchSetupError([f"{path.name} line {number}: not valid JSON ({error})"]) from None
            if not isinstance(row, dict):
                raise BatchSetupError([f"{path.name} line {number}: each line must be a JSON object"])
            rows.append((number, row))
        return rows
    if path.suffix.lower() != ".csv":
        raise BatchSetupError([f"{path.name}: job files are .csv (with a header line) or .jsonl (one JSON object per line)"])
    reader = csv.DictReader(io.StringIO(text, newline=""))  # quoted cells may span lines
    if reader.fieldnames is None:
        raise BatchSetupError([f"{path.name}: empty file; the first line must name the columns (name, ...)"])
    if None in (reader.fieldnames or []) or any(not (f or "").strip() for f in reader.fieldnames):
        raise BatchSetupError([f"{path.name}: the header line has an empty column name"])
    rows = []
    for row in reader:
        if None in row:
            raise BatchSetupError([f"{path.name} line {reader.line_num}: more cells than header columns"])
        if all(not (v or "").strip() for v in row.values()):
            continue
        rows.append((reader.line_num, {k.strip(): v for k, v in row.items()}))
    return rows


def read_jobs(path: str | Path, mapping: dict[str, Target] | None = None) -> list[Job]:
    """Read every job of a CSV or JSONL job file.

    Args:
        path: the job file (``.csv`` with a header line, or ``.jsonl``).
        mapping: column name -> target, from ``--map`` / a mapping file.

    Returns:
        The jobs in file order.

    Raises:
        BatchSetupError: listing every problem: missing/unsafe names, names used twice (compared
            case-insensitively; both lines are named), columns that are
            neither mapped nor ``NODE_ID.INPUT_NAME``, two columns on one target, no job at all.
    """
    path = Path(path)
    mapping = mapping or {}
    try:
        rows = _read_rows(path)
    except OSError as error:
        raise BatchSetupError([f"cannot read the job file {path} ({error})"]) from None
    problems: list[str] = []
    jobs: list[Job] = []
    seen: dict[str, tuple[str, int]] = {}  # casefolded name -> (name as written, line)
    for line, row in rows:
        where = f"{path.name} line {line}"
        name = row.get(NAME_COLUMN)
        name = str(name).strip() if name is not None else ""
        if not name:
            problems.append(f"{where}: the '{NAME_COLUMN}' column is empty; every job needs a unique name")
            continue
        if not _NAME_RE.match(name):
            problems.append(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' "
                            "(it becomes the job's output folder)")
            continue
        key = name.casefold()
        if key in seen:
            first, first_line = seen[key]
            same = "" if first == name else f" as {first!r} (names differing only in case share one folder on macOS and Windows)"
            problems.append(f"{where}: name {name!r} is already used on line {first_line}{same}")
            continue
        seen[key] = (name, line)
        job = Job(name=name, line=line)
        for column, value in row.items():
            if column == NAME_COLUMN or value is None or (isinstance(value, str) and not value.strip()):
                continue
            target = mapping.get(column) or parse_target(column)
            if target is None:
                problems.append(f"{where}: column {column!r} is neither mapped (--map {column}=NODE_ID.INPUT_NAME) "
                                "nor a NODE_ID.INPUT_NAME target")
                continue
            if target in job.values:
                problems.append(f"{where}: columns {job.columns[target]!r} and {column!r} both set {target}")
                continue
            job.values[target] = value.strip() if isinstance(value, str) else value
            job.columns[target] = column
        jobs.append(job)
    if not jobs and not problems:
        problems.append(f"{path.name}: contains no job")
    if problems:
        raise BatchSetupError(problems)
    return jobs
