"""An in-memory ComfyUI for the batch runner's unit tests (no server, no network)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from beyond_monologue.comfyui.comfy_client import PromptLost, PromptResult


class FakeComfy:
    """A ComfyUI that keeps every queued prompt and ends it with success when it is followed.

    Each prompt saves ``talk_00001_.flac`` from node ``output_node`` into its filename_prefix folder;
    ``download`` writes the server subfolder into the local file, so a test can tell runs apart.
    """

    def __init__(self, output_node: str = "3"):
        self.prompts: dict[str, dict] = {}
        self.output_node = output_node

    def submitted_jobs(self) -> Counter:
        """How many prompts each job name was queued with (from the patched filename_prefix)."""
        return Counter(p["3"]["inputs"]["filename_prefix"].split("/")[2] for p in self.prompts.values())

    def upload_file(self, path, name=None, subfolder="", overwrite=True) -> str:
        return f"{subfolder}/{name}"

    def submit(self, prompt: dict, prompt_id: str | None = None, extra_data=None) -> dict:
        self.prompts[prompt_id] = prompt
        return {"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}}

    def prompt_state(self, prompt_id: str) -> str:
        return "finished" if prompt_id in self.prompts else "unknown"

    def wait(self, prompt_id, timeout_s=600.0, on_event=None, ws=None, down_timeout_s=None) -> PromptResult:
        if prompt_id not in self.prompts:
            raise PromptLost(f"no prompt {prompt_id}")
        prefix = self.prompts[prompt_id]["3"]["inputs"]["filename_prefix"]
        folder, _, _ = prefix.rpartition("/")
        entry = {"filename": "talk_00001_.flac", "subfolder": folder, "type": "output"}
        return PromptResult(prompt_id, "success", {self.output_node: {"audio": [entry]}})

    def download(self, filename, subfolder, folder_type, dest) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(subfolder)
        return dest

    def interrupt(self, prompt_id=None) -> None:
        pass

    def delete_queued(self, prompt_ids) -> None:
        pass
