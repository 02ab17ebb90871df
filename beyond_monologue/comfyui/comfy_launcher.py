"""Start and stop a real ComfyUI server with this pack installed (tests and the demo use it).

The server runs as a child process: ``main.py --cpu|(GPU) --listen 127.0.0.1 --port N
--base-directory BASE``, where ``BASE/custom_nodes/<pack name>`` links to this pack and
``BASE/models``, ``input``, ``output``, ``temp`` and ``user`` hold everything the server writes.
Ready when ``GET /system_stats`` answers 200; stopped with SIGINT (ComfyUI exits 0).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_DIR_NAME = "comfyui-beyond-monologue"


def find_comfyui(pack_root: Path = PACK_ROOT) -> Path:
    """Locate ComfyUI: ``$COMFYUI_PATH``, else the path written by ``scripts/setup_env.sh``.

    Raises:
        FileNotFoundError: neither exists (run ``bash scripts/setup_env.sh``).
    """
    candidates = []
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(Path(os.environ["COMFYUI_PATH"]))
    marker = pack_root / ".comfyui" / "path"
    if marker.is_file():
        candidates.append(Path(marker.read_text().strip()))
    candidates.append(pack_root / ".comfyui" / "ComfyUI")
    for candidate in candidates:
        if (candidate / "main.py").is_file():
            return candidate.resolve()
    raise FileNotFoundError("ComfyUI not found: set COMFYUI_PATH or run `bash scripts/setup_env.sh` first")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so that :meth:`ComfyServer.stop`'s SIGINT reaches
    ComfyUI's clean shutdown even when the launching process ignores SIGINT (a child inherits an ignored
    signal, and Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ComfyServer:
    """A ComfyUI child process with this pack in its ``custom_nodes``.

    Args:
        base_dir: the server's ``--base-directory`` (created; models go in ``base_dir/models``).
        comfy_dir: ComfyUI checkout (default: :func:`find_comfyui`).
        port: TCP port (default: a free one).
        cpu: pass ``--cpu`` (True for tests; False lets ComfyUI use a GPU).
        extra_args: more ComfyUI command-line flags.
        python: interpreter (default: the current one).
        log_path: where stdout/stderr go (default: ``base_dir/comfyui.log``).
    """

    def __init__(self, base_dir: str | Path, comfy_dir: str | Path | None = None, port: int | None = None,
                 cpu: bool = True, extra_args: list[str] | None = None, python: str | None = None,
                 log_path: str | Path | None = None, pack_root: Path = PACK_ROOT):
        self.base_dir = Path(base_dir).resolve()
        self.comfy_dir = Path(comfy_dir) if comfy_dir else find_comfyui(pack_root)
        self.port = port or free_port()
        self.cpu = cpu
        self.extra_args = list(extra_args or [])
        self.python = python or sys.executable
        self.log_path = Path(log_path) if log_path else self.base_dir / "comfyui.log"
        self.pack_root = Path(pack_root).resolve()
        self.process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def install_pack(self) -> Path:
        """Link (or, where links are not possible, copy) the pack into ``base_dir/custom_nodes``."""
        custom_nodes = self.base_dir / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        target = custom_nodes / PACK_DIR_NAME
        if target.is_symlink() or target.exists():
            return target
        try:
            target.symlink_to(self.pack_root, target_is_directory=True)
        except OSError:
            shutil.copytree(self.pack_root, target, ignore=shutil.ignore_patterns(".git", ".venv", ".comfyui", "__pycache__"))
        return target

    def command(self) -> list[str]:
        """The full command line used to start the server."""
        cmd = [self.python, str(self.comfy_dir / "main.py"), "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir),
               "--database-url", f"sqlite:///{self.base_dir / 'user' / 'comfyui.db'}",
               "--disable-auto-launch", "--disable-api-nodes"]
        if self.cpu:
            cmd.append("--cpu")
        return cmd + self.extra_args

    def start(self, timeout_s: float = 120.0) -> ComfyServer:
        """Start the server and wait until ``/system_stats`` answers.

        Raises:
            RuntimeError: the process exited or did not become ready in time (the log's tail is in the message).
        """
        self.install_pack()
        (self.base_dir / "user").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 -- lives as long as the server process
        self.process = subprocess.Popen(self.command(), cwd=self.base_dir, env=env, stdout=self._log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as response:  # noqa: S310 -- http://127.0.0.1
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"ComfyUI did not become ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGINT the server (ComfyUI's clean shutdown), SIGKILL if it hangs; returns the exit code."""
        code = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                code = self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                code = self.process.wait()
        elif self.process is not None:
            code = self.process.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def restart(self, timeout_s: float = 120.0) -> ComfyServer:
        """Stop and start again on the same port and base directory."""
        self.stop()
        return self.start(timeout_s)

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> ComfyServer:  # noqa: PYI034 -- typing.Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m beyond_monologue.comfyui.comfy_launcher``: serve ComfyUI with this pack until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description="Start ComfyUI with comfyui-beyond-monologue installed.")
    parser.add_argument("--base-directory", type=Path, default=PACK_ROOT / ".comfyui" / "base",
                        help="ComfyUI --base-directory: models/, input/, output/ and custom_nodes/ live here")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--gpu", action="store_true", help="let ComfyUI use the GPU (default: --cpu)")
    args, extra = parser.parse_known_args(argv)
    server = ComfyServer(args.base_directory, port=args.port, cpu=not args.gpu, extra_args=extra)
    server.start()
    print(f"ComfyUI with the pack is serving at {server.url} (log: {server.log_path}); Ctrl-C stops it.")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
