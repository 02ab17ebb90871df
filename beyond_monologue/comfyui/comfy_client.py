"""A small synchronous client for ComfyUI's HTTP and WebSocket API.

Covers the routes of ComfyUI's ``server.py`` that a batch user needs: ``POST /prompt``,
``GET /history/{id}``, ``GET /view``, ``POST /upload/image`` (any input file, audio included),
``POST /interrupt``, ``GET/POST /queue``, ``GET /object_info`` and ``GET /system_stats``, plus the
``/ws?clientId=`` event stream (``executing`` with ``node: null`` ends a prompt, as in ComfyUI's
``script_examples/websockets_api_example.py``). Uses only the standard library and
``websocket-client``; no network access other than the ComfyUI address it is given.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import websocket

_END_EVENTS = ("execution_error", "execution_interrupted", "execution_success")


def _close_quietly(ws: websocket.WebSocket | None) -> None:
    if ws is not None:
        with contextlib.suppress(websocket.WebSocketException, OSError):
            ws.close()  # closing a dead socket must not hide the real error


class ComfyError(RuntimeError):
    """The server answered with an error, or could not be reached.

    Attributes:
        status: the HTTP status code of the answer, or None when there was no answer.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ComfyUnavailable(ComfyError):
    """The server could not be reached (connection refused, reset or timed out)."""


class PromptLost(ComfyError):
    """The server knows nothing of a prompt any more: not queued, not running, not in its history.

    This is what a server restart does to every prompt it had queued or was running (ComfyUI
    keeps its queue and history in memory).
    """


class PromptRejected(ComfyError):
    """``POST /prompt`` answered 400: the workflow failed ComfyUI's validation.

    Attributes:
        error: ComfyUI's ``error`` object (``type``, ``message``, ``details``).
        node_errors: per node id, ComfyUI's list of errors for that node.
    """

    def __init__(self, error: dict, node_errors: dict):
        self.error = error
        self.node_errors = node_errors
        details = "; ".join(
            f"node {node_id} ({info.get('class_type', '?')}): "
            + ", ".join(e.get("details") or e.get("message", "") for e in info.get("errors", []))
            for node_id, info in node_errors.items())
        super().__init__(f"prompt rejected: {error.get('message', error)}" + (f" [{details}]" if details else ""))


@dataclass
class PromptResult:
    """How a queued prompt ended.

    Attributes:
        prompt_id: the prompt's id.
        status: ``"success"``, ``"error"`` or ``"interrupted"``.
        outputs: ComfyUI's history outputs per node id (``images``, ``audio``, ``videos``... lists).
        messages: the history's status messages (``execution_error`` details among them).
    """

    prompt_id: str
    status: str
    outputs: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)

    def error_message(self) -> str:
        """The ``exception_message`` of an ``execution_error``, or ``""``."""
        for kind, data in self.messages:
            if kind == "execution_error":
                return f"{data.get('node_type', '?')} (node {data.get('node_id', '?')}): {data.get('exception_message', '').strip()}"
        return ""


class ComfyClient:
    """Client for one ComfyUI server.

    Args:
        base_url: e.g. ``"http://127.0.0.1:8188"``.
        client_id: id used for ``/ws`` and ``POST /prompt`` so progress events reach this client.
        timeout_s: socket timeout of each HTTP request, in seconds.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8188", client_id: str | None = None, timeout_s: float = 30.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// address, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout_s = timeout_s

    # -- plain HTTP -------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
        # the scheme is checked in __init__: only http(s) to the ComfyUI address
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                return response.read()
        except urllib.error.HTTPError as error:
            payload = error.read()
            if error.code == 400 and path == "/prompt":
                data = json.loads(payload or b"{}")
                raise PromptRejected(data.get("error", {}), data.get("node_errors", {})) from None
            raise ComfyError(f"{method} {path} answered {error.code}: {payload[:500].decode(errors='replace')}",
                             status=error.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            raise ComfyUnavailable(f"{method} {path}: ComfyUI at {self.base_url} is not reachable ({error})") from None

    def get_json(self, path: str) -> dict:
        """``GET path`` and decode the JSON answer."""
        return json.loads(self._request("GET", path))

    def post_json(self, path: str, data: object) -> bytes:
        """``POST path`` with a JSON body; returns the raw answer."""
        return self._request("POST", path, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def system_stats(self) -> dict:
        """``GET /system_stats``."""
        return self.get_json("/system_stats")

    def object_info(self, node_class: str | None = None) -> dict:
        """``GET /object_info`` (all node types) or ``/object_info/{node_class}``."""
        return self.get_json("/object_info" + (f"/{urllib.parse.quote(node_class)}" if node_class else ""))

    def queue(self) -> dict:
        """``GET /queue``: ``{"queue_running": [...], "queue_pending": [...]}``."""
        return self.get_json("/queue")

    def submit(self, prompt: dict, prompt_id: str | None = None, extra_data: dict | None = None) -> dict:
        """Queue an API-format workflow and return ComfyUI's whole answer.

        The answer is ``{"prompt_id", "number", "node_errors"}``; ``node_errors`` is not empty when
        ComfyUI queued the valid outputs of a partly invalid workflow.

        Raises:
            PromptRejected: the workflow failed validation (ComfyUI answered 400).
            ComfyUnavailable: the server is down.
        """
        body = {"prompt": prompt, "client_id": self.client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        if extra_data:
            body["extra_data"] = extra_data
        return json.loads(self.post_json("/prompt", body))

    def queue_prompt(self, prompt: dict, prompt_id: str | None = None, extra_data: dict | None = None) -> str:
        """Queue an API-format workflow; returns its prompt id (see :meth:`submit`)."""
        return self.submit(prompt, prompt_id, extra_data)["prompt_id"]

    def prompt_state(self, prompt_id: str) -> str:
        """Where the server has a prompt: ``"pending"``, ``"running"``, ``"finished"`` or ``"unknown"``.

        The queue is read before the history: ComfyUI moves a prompt from its queue to its
        history under one lock, so a prompt that exists is never missed between the two reads.
        """
        queue = self.queue()
        if any(item[1] == prompt_id for item in queue.get("queue_running", [])):
            return "running"
        if any(item[1] == prompt_id for item in queue.get("queue_pending", [])):
            return "pending"
        return "finished" if self.history(prompt_id) is not None else "unknown"

    def delete_queued(self, prompt_ids: list[str]) -> None:
        """``POST /queue {"delete": [...]}``: drop prompts that have not started yet."""
        self.post_json("/queue", {"delete": list(prompt_ids)})

    def history(self, prompt_id: str) -> dict | None:
        """The ``/history/{prompt_id}`` entry, or None while the prompt has not finished."""
        return self.get_json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)

    def result(self, prompt_id: str) -> PromptResult | None:
        """How the prompt ended, from its history entry; None while it has not finished."""
        entry = self.history(prompt_id)
        if entry is None:
            return None
        status = entry.get("status", {})
        messages = status.get("messages", [])
        kinds = {kind for kind, _ in messages}
        if "execution_interrupted" in kinds:
            state = "interrupted"
        elif status.get("status_str") == "success":
            state = "success"
        else:
            state = "error"
        return PromptResult(prompt_id, state, entry.get("outputs", {}), messages)

    def view(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes:
        """Download a file through ``GET /view``."""
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
        return self._request("GET", f"/view?{query}")

    def download(self, filename: str, subfolder: str, folder_type: str, dest: str | Path,
                 chunk_bytes: int = 1 << 20) -> Path:
        """Stream a file from ``GET /view`` into ``dest``, written whole or not at all.

        The bytes go to ``dest`` + ``.part`` first and are renamed over ``dest`` at the end, so an
        interrupted download never leaves a truncated file under the final name.

        Raises:
            ComfyError: the server answered an error (``status`` 404: no such file).
            ComfyUnavailable: the server is down or the connection broke.
            OSError: ``dest`` cannot be written.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
        request = urllib.request.Request(f"{self.base_url}/view?{query}")  # noqa: S310 -- http(s) checked in __init__
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)  # noqa: S310
        except urllib.error.HTTPError as error:
            raise ComfyError(f"GET /view {filename!r} answered {error.code}", status=error.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            raise ComfyUnavailable(f"GET /view {filename!r}: ComfyUI at {self.base_url} is not reachable ({error})") from None
        try:
            with response, open(partial, "wb") as out:  # an OSError of the local disk is raised as it is
                while True:
                    try:
                        chunk = response.read(chunk_bytes)
                    except (ConnectionError, TimeoutError, OSError) as error:
                        raise ComfyUnavailable(f"GET /view {filename!r}: download broke off ({error})") from None
                    if not chunk:
                        break
                    out.write(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(dest)
        return dest

    def upload_file(self, path: str | Path, name: str | None = None, subfolder: str = "", overwrite: bool = True) -> str:
        """Upload a file into ComfyUI's input folder with ``POST /upload/image`` (works for audio too).

        Returns:
            The name to put in a workflow's file widget (``subfolder/name`` when a subfolder is used).
        """
        path = Path(path)
        name = name or path.name
        boundary = uuid.uuid4().hex
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode() + path.read_bytes() + b"\r\n",
            f'--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\n{"true" if overwrite else "false"}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n'.encode(),
        ]
        if subfolder:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="subfolder"\r\n\r\n{subfolder}\r\n'.encode())
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        answer = json.loads(self._request("POST", "/upload/image", body,
                                          {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``: stop the running prompt (only if it is ``prompt_id``, when given)."""
        self.post_json("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    # -- WebSocket --------------------------------------------------------------------------
    def connect_ws(self, timeout_s: float = 5.0) -> websocket.WebSocket:
        """Open ``/ws?clientId=...``; the caller closes it."""
        url = self.base_url.replace("http://", "ws://").replace("https://", "wss://")
        return websocket.create_connection(f"{url}/ws?clientId={self.client_id}", timeout=timeout_s)

    def wait(self, prompt_id: str, timeout_s: float = 600.0,
             on_event: Callable[[str, dict], None] | None = None, ws: websocket.WebSocket | None = None,
             down_timeout_s: float | None = None) -> PromptResult:
        """Follow a queued prompt until it ends and return its result.

        Events arrive over ``/ws`` (``progress``, ``executing``, ``executed`` ...) and are passed to
        ``on_event(type, data)``. If the socket drops (server restart) it reconnects, and the end is
        always confirmed through ``/history``, so no event stream is trusted alone. After every
        reconnect, and every few seconds while no event comes, it checks that the server still
        knows the prompt (:meth:`prompt_state`).

        Args:
            prompt_id: the prompt to follow.
            timeout_s: give up after this many seconds.
            on_event: optional callback for every JSON event of this prompt.
            ws: an already open socket (opened before queueing, so that no event is missed).
            down_timeout_s: give up when the server stays unreachable this many seconds in a row
                (None: keep trying until ``timeout_s``).

        Raises:
            TimeoutError: the prompt did not end within ``timeout_s``.
            PromptLost: the server does not know the prompt (it restarted, or the prompt was deleted).
            ComfyUnavailable: the server stayed unreachable for ``down_timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        own_socket = ws is None
        down_since: float | None = None
        try:
            while time.monotonic() < deadline:
                try:
                    if ws is None:
                        ws = self.connect_ws()
                        down_since = None
                    finished = self._follow(ws, prompt_id, deadline, on_event)
                    if finished is not None:
                        return finished
                except (websocket.WebSocketException, ConnectionError, OSError, ComfyUnavailable) as error:
                    _close_quietly(ws)
                    ws = None
                    own_socket = True
                    now = time.monotonic()
                    down_since = down_since or now
                    if down_timeout_s is not None and now - down_since > down_timeout_s:
                        raise ComfyUnavailable(f"ComfyUI at {self.base_url} unreachable for {now - down_since:.0f} s "
                                               f"while following prompt {prompt_id} ({error})") from None
                    time.sleep(0.5)
            raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout_s:.0f} s")
        finally:
            if own_socket:
                _close_quietly(ws)

    def _check(self, prompt_id: str, known: bool) -> PromptResult | None:
        """The prompt's result if it has ended; None while it is queued or running.

        ``known=False`` also asks the queue (:meth:`prompt_state`) and raises PromptLost when the
        server has never heard of the prompt.
        """
        finished = self.result(prompt_id)
        if finished is None and not known and self.prompt_state(prompt_id) == "unknown":
            raise PromptLost(f"ComfyUI at {self.base_url} does not know prompt {prompt_id} "
                             "(not queued, not running, not in its history): the server restarted or it was deleted")
        return finished

    def _follow(self, ws: websocket.WebSocket, prompt_id: str, deadline: float,
                on_event: Callable[[str, dict], None] | None, state_check_every: int = 5) -> PromptResult | None:
        """Read events until the prompt ends (confirmed by /history) or the deadline passes."""
        ws.settimeout(1.0)
        finished = self._check(prompt_id, known=False)
        idle_ticks = 0
        while finished is None and time.monotonic() < deadline:
            try:
                frame = ws.recv()
            except websocket.WebSocketTimeoutException:
                idle_ticks += 1
                finished = self._check(prompt_id, known=idle_ticks % state_check_every != 0)
                continue
            if not isinstance(frame, str):
                continue  # binary latent preview
            message = json.loads(frame)
            kind, data = message.get("type", ""), message.get("data", {}) or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if on_event is not None:
                on_event(kind, data)
            if (kind == "executing" and data.get("node") is None) or kind in _END_EVENTS:
                for _ in range(50):  # history is written just after the last event
                    finished = self.result(prompt_id)
                    if finished is not None:
                        break
                    time.sleep(0.1)
        return finished

    def run(self, prompt: dict, timeout_s: float = 600.0,
            on_event: Callable[[str, dict], None] | None = None) -> PromptResult:
        """Queue a workflow and wait for its result (socket opened first, so no event is missed)."""
        ws = self.connect_ws()
        try:
            prompt_id = self.queue_prompt(prompt)
            return self.wait(prompt_id, timeout_s, on_event, ws=ws)
        finally:
            ws.close()
