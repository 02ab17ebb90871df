"""Check a batch against the workflow and the server's node definitions, and patch jobs into prompts.

Every target ``NODE_ID.INPUT_NAME`` is looked up in the API-format workflow (the node must exist)
and in ``GET /object_info`` (the input's type). Values are coerced the way ComfyUI's widgets
store them: ``INT`` -> int (within min/max), ``FLOAT`` -> float, ``BOOLEAN`` -> bool, ``STRING``
-> str, combos -> one of their options. Inputs with a file-upload flag in ``/object_info``
(``image_upload``, ``audio_upload``, ``video_upload``: Load Image, Load Audio, Load Video ...)
take a local file path, which is uploaded before the job is queued; a name that is already in
the server's input folder is used as it is.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .jobs import BatchSetupError, Job, Target

UPLOAD_FLAGS = ("image_upload", "audio_upload", "video_upload")
_VALUE_KINDS = {"INT": "int", "FLOAT": "float", "BOOLEAN": "bool", "STRING": "string", "*": "any"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NODE_ID_RE = re.compile(r"[A-Za-z0-9_:-]+")  # node ids name downloaded files: <node id>_<name>


@dataclass(frozen=True)
class InputKind:
    """What a target input accepts.

    Attributes:
        kind: ``"file"``, ``"int"``, ``"float"``, ``"bool"``, ``"string"``, ``"combo"`` or ``"any"``.
        options: the combo's options (for ``"combo"`` and ``"file"``: the server's files), else empty.
        minimum, maximum: numeric bounds from ``/object_info``, when given.
    """

    kind: str
    options: tuple = ()
    minimum: float | None = None
    maximum: float | None = None


def load_workflow(path: str | Path) -> dict:
    """Read an API-format workflow (``{"node_id": {"class_type": ..., "inputs": {...}}}``).

    Raises:
        BatchSetupError: unreadable, not JSON, a UI-format workflow, a node id with characters
            other than letters, digits, ``_``, ``:`` and ``-`` (it becomes part of a local file
            name), or a node without class_type/inputs.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BatchSetupError([f"workflow {path}: cannot read it as JSON ({error})"]) from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise BatchSetupError([f"workflow {path} is in the UI format; the batch client needs the API format: "
                               "in ComfyUI use Workflow > Export (API), or take the twin under workflows/api/"])
    if not isinstance(data, dict) or not data:
        raise BatchSetupError([f"workflow {path}: expected a JSON object of nodes keyed by node id"])
    unsafe = [repr(k) for k in data if not _NODE_ID_RE.fullmatch(k)]
    if unsafe:
        raise BatchSetupError([f"workflow {path}: node id(s) {', '.join(unsafe)} may only use letters, digits, "
                               "'_', ':' and '-' (node ids name the downloaded files)"])
    bad = [str(k) for k, v in data.items() if not isinstance(v, dict) or "class_type" not in v
           or not isinstance(v.get("inputs"), dict)]
    if bad:
        raise BatchSetupError([f"workflow {path}: node(s) {', '.join(bad)} lack 'class_type' or 'inputs' "
                               "(is this an API-format workflow?)"])
    return data


def input_kind(spec: list | None, current: object = None) -> InputKind | None:
    """The :class:`InputKind` of one ``/object_info`` input spec ``[type_or_options, {options}]``.

    Without a spec (an input the node does not declare, e.g. a dynamic one) the kind follows the
    workflow's current literal value. Returns None for a connection type (AUDIO, IMAGE, MODEL ...).
    """
    if spec is None:
        if isinstance(current, bool):
            return InputKind("bool")
        if isinstance(current, int):
            return InputKind("int")
        if isinstance(current, float):
            return InputKind("float")
        return InputKind("string") if isinstance(current, str) else InputKind("any")
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, list) or kind == "COMBO":
        choices = tuple(kind) if isinstance(kind, list) else tuple(options.get("options", ()))
        upload = any(options.get(flag) for flag in UPLOAD_FLAGS)
        return InputKind("file" if upload else "combo", choices)
    if kind in _VALUE_KINDS:
        return InputKind(_VALUE_KINDS[kind], minimum=options.get("min"), maximum=options.get("max"))
    return None


def _spec(object_info: dict, class_type: str, input_name: str) -> list | None:
    inputs = object_info.get(class_type, {}).get("input", {})
    for section in ("required", "optional"):
        if input_name in inputs.get(section, {}):
            return inputs[section][input_name]
    return None


def resolve_targets(workflow: dict, object_info: dict, targets: set[Target]) -> tuple[dict[Target, InputKind], list[str]]:
    """The kind of every target, and a problem per target that cannot take a value."""
    kinds: dict[Target, InputKind] = {}
    problems: list[str] = []
    for target in sorted(targets, key=str):
        node = workflow.get(target.node_id)
        if node is None:
            problems.append(f"{target}: the workflow has no node {target.node_id!r} "
                            f"(node ids: {', '.join(sorted(workflow, key=str))})")
            continue
        class_type = node["class_type"]
        if class_type not in object_info:
            problems.append(f"{target}: node {target.node_id} is a {class_type}, which this ComfyUI does not have "
                            "(install its node pack, or check the workflow)")
            continue
        spec = _spec(object_info, class_type, target.input_name)
        if spec is None and target.input_name not in node["inputs"]:
            declared = sorted(object_info[class_type].get("input", {}).get("required", {}))
            problems.append(f"{target}: {class_type} has no input {target.input_name!r} (inputs: {', '.join(declared)})")
            continue
        kind = input_kind(spec, node["inputs"].get(target.input_name))
        if kind is None:
            problems.append(f"{target}: input {target.input_name!r} of {class_type} is a connection ({spec[0]}), "
                            "not a value; map the column to the file input of a loader node (e.g. LoadAudio's audio)")
            continue
        kinds[target] = kind
    return kinds, problems


def coerce(value: object, kind: InputKind) -> object:
    """Convert one job value (a CSV string or a JSON value) to what the input takes.

    Raises:
        ValueError: with a message saying what is expected.
    """
    text = value.strip() if isinstance(value, str) else value
    if kind.kind == "int":
        if isinstance(text, bool) or not (isinstance(text, int) or (isinstance(text, str) and text.lstrip("-").isdigit())):
            raise ValueError(f"expected a whole number, got {value!r}")
        number = int(text)
    elif kind.kind == "float":
        try:
            number = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    elif kind.kind == "bool":
        if isinstance(text, bool):
            return text
        if str(text).lower() in _TRUE | _FALSE:
            return str(text).lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    elif kind.kind == "combo":
        if kind.options and text not in kind.options:
            shown = ", ".join(map(str, kind.options[:12])) + (" ..." if len(kind.options) > 12 else "")
            raise ValueError(f"{value!r} is not one of the options ({shown})")
        return text
    elif kind.kind in ("string", "file"):
        return str(text)
    else:
        return value
    if (kind.minimum is not None and number < kind.minimum) or (kind.maximum is not None and number > kind.maximum):
        raise ValueError(f"{number} is outside {kind.minimum}..{kind.maximum}")
    return number


def local_file(value: str, kind: InputKind, base_dir: Path) -> Path | None:
    """The local file a file-input value names (relative to ``base_dir``), or None when the value is
    already a file in the server's input folder.

    Raises:
        ValueError: neither a local file nor a file the server has.
    """
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.is_file():
        return path
    if value in kind.options:
        return None
    raise ValueError(f"file {value!r} not found (looked for {path}, and it is not in the server's input folder)")


def prepare_jobs(workflow: dict, object_info: dict, jobs: list[Job], base_dir: Path) -> dict[Target, InputKind]:
    """Check every job before anything runs: targets exist, values coerce, files exist.

    Coerced values replace the raw ones in ``job.values``; file inputs hold a local :class:`Path`
    (to upload) or the server's own file name.

    Returns:
        The kind of every target used.

    Raises:
        BatchSetupError: listing every problem of every job.
    """
    targets = {target for job in jobs for target in job.values}
    kinds, problems = resolve_targets(workflow, object_info, targets)
    for job in jobs:
        for target, value in list(job.values.items()):
            if target not in kinds:
                continue
            where = f"job {job.name!r} (line {job.line}) column {job.columns[target]!r} -> {target}"
            try:
                coerced = coerce(value, kinds[target])
                if kinds[target].kind == "file":
                    coerced = local_file(coerced, kinds[target], base_dir) or coerced
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            job.values[target] = coerced
    if problems:
        raise BatchSetupError(problems)
    return kinds


def file_digest(path: Path) -> str:
    """sha256 hex digest of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def job_fingerprint(job: Job) -> str:
    """A short hash of a prepared job's values (files by content), to notice a job edited after it ran."""
    items = {str(t): (f"sha256:{file_digest(v)}" if isinstance(v, Path) else v) for t, v in job.values.items()}
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


def patch_prompt(workflow: dict, job: Job, uploaded: dict[Target, str], prefix_root: str, submission: int = 1) -> dict:
    """The prompt of one job: a copy of the workflow with the job's values set.

    Args:
        workflow: the API-format workflow (not modified).
        job: a job prepared by :func:`prepare_jobs`.
        uploaded: for file targets with a local path, the name ComfyUI gave the uploaded file.
        prefix_root: every ``filename_prefix`` the job does not set becomes
            ``{prefix_root}/{job.name}/{original prefix}``, so each job's files on the server are
            grouped (and never mixed with another job's).
        submission: the job's submission number; from the second on the prefix gets a
            ``try{n}/`` level. ComfyUI caches node results by their inputs, and a save node whose
            inputs did not change is not run again, so a job queued again on the same server
            process would otherwise point at its old files instead of saving new ones.
    """
    prompt = copy.deepcopy(workflow)
    folder = job.name if submission <= 1 else f"{job.name}/try{submission}"
    for node in prompt.values():
        prefix = node["inputs"].get("filename_prefix")
        if isinstance(prefix, str):
            node["inputs"]["filename_prefix"] = f"{prefix_root}/{folder}/{prefix}"
    for target, value in job.values.items():
        prompt[target.node_id]["inputs"][target.input_name] = uploaded.get(target, value) if isinstance(value, Path) else value
    return prompt
