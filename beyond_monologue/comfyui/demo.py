"""The README's main command: render the dyadic example on a real conversation with a real ComfyUI.

``bash scripts/demo.sh`` sets up the environment, fetches the real inputs and runs
``python -m beyond_monologue.comfyui.demo``, which:

1. checks the model files of set ``beyond-monologue-wan22-5b`` in the ComfyUI ``models`` folder
   (the weights ``verify`` logic); files that are missing are generated as smoke checkpoints
   (untrained, real layouts and names) and smoke files of an older smoke format regenerated, with
   a loud notice and the list of files to download; a file that is present but broken stops the
   demo (it is never overwritten);
2. starts ComfyUI with the pack (``--cpu`` unless CUDA is available), or uses ``--server``;
3. uploads the inputs: the two-speaker ``sample.wav`` (pyannote-audio wheel), the portraits
   ``grace_hopper.jpg`` and ``astronaut.png``, and the conversation cut into each speaker's
   stream with its RTTM (inputs of the other example workflows);
4. sets them on ``workflows/api/dyadic_conversation.json`` through its batch map; with smoke
   weights also CPU-friendly settings (:data:`SMOKE_SETTINGS`);
5. runs it through the HTTP API with progress, downloads the MP4 into ``demo_output/`` and prints
   its path, duration and size.

Exit codes: 0 rendered; 1 the render failed; 2 unusable model files or inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from ..video.media_info import VideoInfo, probe_video
from ..weights import ModelFile, load_manifest
from ..weights.messages import CLI, manual_instructions
from ..weights.verify import FileReport, Status, models_dir_of, verify_set
from .comfy_client import ComfyClient, PromptResult
from .comfy_launcher import PACK_ROOT, ComfyServer
from .example_workflows import (
    CONVERSATION,
    PORTRAIT_A,
    PORTRAIT_B,
    SPEAKER_STREAMS,
    TRAINING_CLIP,
    TWO_PEOPLE,
    WORKFLOWS_DIR,
)
from .workflow_format import get_inputs, set_inputs

DEMO_SET = "beyond-monologue-wan22-5b"
WORKFLOW_NAME = "dyadic_conversation"
DEFAULT_BASE = PACK_ROOT / ".comfyui" / "base"  # the launcher's default --base-directory
DEFAULT_OUT = PACK_ROOT / "demo_output"
ASSETS = PACK_ROOT / ".cache" / "assets"  # scripts/fetch_assets.py
OUTPUT_PREFIX = "bm_demo/dyadic"
# Smoke weights render noise, so the demo only shows that the pipeline runs: 32x32 px per avatar
# (the full-size Wan2.2 VAE decodes a 32x32 latent frame in about 1 s on 2 CPU cores), 5 fps (the 30 s
# conversation is 150 frames), 2 sampling steps per window.
SMOKE_SETTINGS = {"fps": 5.0, "width": 32, "height": 32, "steps_a": 2, "steps_b": 2}
BROKEN = (Status.WRONG_SIZE, Status.CORRUPT, Status.HASH_MISMATCH)
BANNER = "=" * 78


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and what to do. ``exit_code``: 1 render failed, 2 setup."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class WeightsState:
    """The model files the demo renders with.

    Attributes:
        reports: the verify report of every file of the set (after smoke files were written).
        generated: files this run wrote (or rewrote) as smoke checkpoints.
    """

    reports: list[FileReport]
    generated: list[ModelFile] = field(default_factory=list)

    @property
    def smoke(self) -> list[FileReport]:
        """Required files that are smoke checkpoints (untrained)."""
        return [r for r in self.reports if r.required and r.status is Status.SMOKE]


def log(text: str) -> None:
    """One line of the demo's own output."""
    print(f"[demo] {text}", flush=True)


def prepare_weights(models_dir: Path, check_hash: bool = True) -> WeightsState:
    """Verify the set's files in ``models_dir``; write smoke checkpoints for the missing ones and rewrite
    smoke files that are not current (older smoke format or another seed; current ones are kept).

    Raises:
        DemoError: a required file is present but broken (wrong size, not a complete safetensors
            file, hash mismatch): it is never overwritten.
    """
    from ..weights.hashing import Sha256Cache, default_cache_path
    from ..weights.smoke.generate import generate_file, is_current

    manifest = load_manifest()
    cache = Sha256Cache(default_cache_path()) if check_hash else None
    try:
        reports = verify_set(manifest, DEMO_SET, models_dir, cache, check_hash=check_hash, progress=check_hash)
    finally:
        if cache is not None:
            cache.save()
    broken = [r for r in reports if r.required and r.status in BROKEN]
    if broken:
        lines = "\n".join(f"  {r.status.value}: {r.path}: {r.detail}" for r in broken)
        raise DemoError(f"these model files are present but not usable:\n{lines}\nDelete or replace them, then run "
                        f"the demo again.\n{manual_instructions([r.file for r in broken])}")
    generated = []
    for report in reports:
        if report.required and report.status in (Status.MISSING, Status.UNPUBLISHED, Status.SMOKE):
            if report.path is None or not is_current(report.path, report.file.smoke or "", 0):
                log(f"generating smoke checkpoint models/{report.file.folder}/{report.file.filename} (untrained) ...")
            result = generate_file(report.file, models_dir)  # keeps a smoke file that is current
            if result.path is None:
                raise DemoError(f"no smoke builder for {report.file.filename}; {manual_instructions([report.file])}")
            if result.outcome == "written":
                generated.append(report.file)
    if generated:
        reports = verify_set(manifest, DEMO_SET, models_dir, check_hash=False)
    return WeightsState(reports, generated)


def smoke_notice(state: WeightsState, models_dir: Path, settings: dict | None) -> str:
    """The loud notice printed when smoke checkpoints are used: what that means and which files to download."""
    files = [r.file for r in state.smoke]
    published = [f for f in files if f.published]
    lines = [BANNER, "SMOKE WEIGHTS: these model files are generated smoke checkpoints (random, untrained):"]
    lines += [f"  models/{f.folder}/{f.filename}" for f in files]
    lines += ["The video will be untrained noise. It shows that the whole pipeline runs (real ComfyUI, real",
              "conversation, real portraits), not what the model does."]
    if published:
        lines += [f"To render for real (models folder: {models_dir}):", manual_instructions(published),
                  f"(or run: {CLI} download --set {DEMO_SET} --comfyui {models_dir.parent})"]
    if any(not f.published for f in files):
        lines += ["The Beyond Monologue adapter has not been published yet: until it is, the adapter stays a smoke",
                  "checkpoint and the avatars' lips do not follow the audio."]
    if settings:
        shipped = workflow_settings()
        lines += [f"Smoke settings (CPU-friendly): {describe(settings)} (--full-size keeps the workflow's own "
                  f"{describe(shipped)})."]
    lines.append(BANNER)
    return "\n".join(lines)


def describe(settings: dict) -> str:
    """``32x32 px per avatar, 5 fps, 2 sampling steps per window`` for a dict of :data:`SMOKE_SETTINGS`' columns."""
    return (f"{settings['width']}x{settings['height']} px per avatar, {settings['fps']:g} fps, "
            f"{settings['steps_a']} sampling steps per window")


def speaker_streams(assets: Path, folder: Path) -> list[Path]:
    """Cut the conversation into each speaker's stream with its RTTM (silence where the other speaks).

    Returns:
        ``[speaker_1, speaker_2]`` 16-bit PCM WAV paths in ``folder`` (speakers numbered by first turn),
        as long as the conversation and at its sample rate.
    """
    import numpy as np
    import torch

    from ..audio.conversation import split_by_turns
    from ..audio.turns import parse_turns_text

    with wave.open(str(assets / CONVERSATION), "rb") as source:  # sample.wav: 16-bit PCM
        rate, channels = source.getframerate(), source.getnchannels()
        pcm = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2").reshape(-1, channels)
    waveform = torch.from_numpy(pcm.T.astype(np.float32) / 32768.0)
    turns = parse_turns_text((assets / "sample.rttm").read_text(), "sample.rttm")
    paths = []
    for stream, name in zip(split_by_turns(waveform, rate, turns, 0)[:2], SPEAKER_STREAMS, strict=True):
        paths.append(folder / name)
        with wave.open(str(paths[-1]), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes((stream.clamp(-1, 32767 / 32768) * 32768).round().to(torch.int16).numpy().tobytes())
    return paths


def place_inputs(client: ComfyClient, assets: Path = ASSETS) -> dict[str, str]:
    """Upload the real inputs into the server's input folder; returns the names a workflow uses.

    A file already there with the same content is reused; one with the same name but other content
    is kept, and ComfyUI stores ours as ``name (1).ext``.

    Keys: ``conversation``, ``portrait_a``, ``portrait_b``, ``speaker_1``, ``speaker_2``, ``training_clip``,
    ``two_people``.

    Raises:
        DemoError: an input is missing (run ``scripts/fetch_assets.py``).
    """
    wanted = [CONVERSATION, "sample.rttm", PORTRAIT_A, PORTRAIT_B]
    missing = [name for name in wanted if not (assets / name).is_file()]
    if missing:
        raise DemoError(f"inputs missing in {assets}: {', '.join(missing)}. Run: python scripts/fetch_assets.py")

    def upload(path: Path) -> str:  # never replaces a different file of the same name (ComfyUI renames ours)
        return client.upload_file(path, overwrite=False)

    names = {"conversation": upload(assets / CONVERSATION), "portrait_a": upload(assets / PORTRAIT_A),
             "portrait_b": upload(assets / PORTRAIT_B)}
    with tempfile.TemporaryDirectory() as folder:
        streams = speaker_streams(assets, Path(folder))
        for key, path in zip(("speaker_1", "speaker_2"), streams, strict=True):
            names[key] = upload(path)
        names["training_clip"] = upload(training_clip(assets, streams, Path(folder)))
        names["two_people"] = upload(two_people_picture(assets, Path(folder)))
    return names


def two_people_picture(assets: Path, folder: Path, width: int = 832, height: int = 480) -> Path:
    """A stand-in picture of two people side by side (``TWO_PEOPLE`` in ``folder``): portrait A on the left
    (speaker 1), portrait B on the right, each centre-cropped to half of ``width`` x ``height`` (PNG)."""
    from PIL import Image, ImageOps

    canvas = Image.new("RGB", (width, height))
    for i, name in enumerate((PORTRAIT_A, PORTRAIT_B)):
        half = ImageOps.fit(Image.open(assets / name).convert("RGB"), (width // 2, height), Image.LANCZOS)
        canvas.paste(half, (i * (width // 2), 0))
    path = folder / TWO_PEOPLE
    canvas.save(path)
    return path


def training_clip(assets: Path, streams: list[Path], folder: Path, start_s: float = 9.0, frames: int = 41,
                  fps: int = 25, size: int = 64) -> Path:
    """A short two-channel conversation clip for the training example (``TRAINING_CLIP`` in ``folder``).

    The frames are portrait A panned slowly (``size`` px, ``frames`` at ``fps``); the audio is the real
    conversation from ``start_s``: left channel speaker 1's stream (the on-screen person), right
    channel speaker 2's, as a stereo recording of a call would give them (AAC in MP4, PyAV).
    """
    import av
    import numpy as np
    from PIL import Image

    portrait = Image.open(assets / PORTRAIT_A).convert("RGB")
    side = min(portrait.size)
    audio = []
    for path in streams:
        with wave.open(str(path), "rb") as source:
            rate = source.getframerate()
            source.setpos(int(start_s * rate))
            audio.append(np.frombuffer(source.readframes(int(frames / fps * rate)), dtype="<i2").astype(np.float32) / 32768.0)
    path = folder / TRAINING_CLIP
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("h264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=rate, layout="stereo")
        for i in range(frames):
            shift = int(np.rint(side * 0.04 * np.sin(2 * np.pi * i / frames)))
            box = (max(0, shift), 0, max(0, shift) + side - abs(shift), side - abs(shift))
            image = portrait.crop(box).resize((size, size), Image.BILINEAR)
            for packet in video.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
                container.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.stack(audio).reshape(1, -1, order="F"), format="flt", layout="stereo")
        frame.sample_rate = rate
        for packet in sound.encode(frame):
            container.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def dyadic_workflow() -> tuple[dict, dict]:
    """The dyadic API workflow and its batch map (``workflows/api/``)."""
    folder = WORKFLOWS_DIR / "api"
    return (json.loads((folder / f"{WORKFLOW_NAME}.json").read_text()),
            json.loads((folder / f"{WORKFLOW_NAME}.map.json").read_text()))


def workflow_settings() -> dict:
    """The shipped workflow's values of the :data:`SMOKE_SETTINGS` columns."""
    workflow, mapping = dyadic_workflow()
    return get_inputs(workflow, mapping, list(SMOKE_SETTINGS))


def dyadic_prompt(names: dict[str, str], settings: dict | None = None, prefix: str = OUTPUT_PREFIX) -> dict:
    """The dyadic API workflow with the uploaded inputs, ``settings`` (map columns) and the output prefix set."""
    workflow, mapping = dyadic_workflow()
    values = {"conversation": names["conversation"], "portrait_a": names["portrait_a"],
              "portrait_b": names["portrait_b"], **(settings or {})}
    prompt = set_inputs(workflow, mapping, values)
    for node in prompt.values():
        if node["class_type"] == "SaveVideo":
            node["inputs"]["filename_prefix"] = prefix
    return prompt


def follow(client: ComfyClient, prompt: dict, timeout_s: float) -> PromptResult:
    """Queue ``prompt`` and wait for it, printing each node as it starts and its progress."""
    titles = {k: v.get("_meta", {}).get("title", v["class_type"]) for k, v in prompt.items()}
    start = time.monotonic()
    last = {"node": None, "shown": -1}

    def on_event(kind: str, data: dict) -> None:
        node = data.get("node")
        if kind == "executing" and node is not None:
            last.update(node=node, shown=-1)
            log(f"{time.monotonic() - start:7.1f} s  {titles.get(str(node), node)}")
        elif kind == "progress" and node == last["node"]:
            percent = int(100 * data.get("value", 0) / max(1, data.get("max", 1)))
            if percent // 25 > last["shown"] // 25:  # at 0, 25, 50, 75 and 100 %
                last["shown"] = percent
                log(f"{time.monotonic() - start:7.1f} s    {titles.get(str(node), node)}: "
                    f"{data.get('value')}/{data.get('max')}")

    return client.run(prompt, timeout_s=timeout_s, on_event=on_event)


def download_video(client: ComfyClient, result: PromptResult, out_dir: Path) -> Path:
    """Download the MP4 of the workflow's Save Video node into ``out_dir``.

    Raises:
        DemoError: the prompt saved no video.
    """
    from ..batch.outputs import output_files

    videos = [f for f in output_files(result.outputs) if f["filename"].lower().endswith(".mp4")]
    if not videos:
        raise DemoError(f"the workflow saved no MP4 (outputs: {result.outputs})")
    return client.download(videos[0]["filename"], videos[0]["subfolder"], "output", out_dir / f"{WORKFLOW_NAME}.mp4")


def demo_settings(state: WeightsState, full_size: bool = False) -> dict | None:
    """:data:`SMOKE_SETTINGS` when any required file is a smoke checkpoint (unless ``full_size``), else None."""
    return SMOKE_SETTINGS if state.smoke and not full_size else None


def render(client: ComfyClient, settings: dict | None, out_dir: Path, assets: Path = ASSETS,
           timeout_s: float = 4 * 3600, prefix: str = OUTPUT_PREFIX) -> tuple[Path, VideoInfo]:
    """Steps 3-5 of the module docstring on a running server; returns the MP4 and what it holds.

    Raises:
        DemoError: missing inputs, a failed render (``exit_code`` 1) or no video.
    """
    names = place_inputs(client, assets)
    log(f"inputs placed in ComfyUI's input folder: {', '.join(names.values())}")
    result = follow(client, dyadic_prompt(names, settings, prefix), timeout_s)
    if result.status != "success":
        raise DemoError(f"the render {result.status}: {result.error_message() or result.messages}", exit_code=1)
    path = download_video(client, result, out_dir)
    return path, probe_video(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m beyond_monologue.comfyui.demo``: see the module docstring."""
    parser = argparse.ArgumentParser(description="Render the dyadic conversation example with a real ComfyUI.")
    parser.add_argument("--comfyui", type=Path, default=DEFAULT_BASE,
                        help="ComfyUI folder (or --base-directory) whose models/ holds the weights "
                             f"(default: {DEFAULT_BASE}, the launcher's)")
    parser.add_argument("--server", help="use this running ComfyUI with the pack (its models folder: --comfyui)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the MP4 goes (default: demo_output/)")
    parser.add_argument("--assets", type=Path, default=ASSETS, help="folder of scripts/fetch_assets.py")
    parser.add_argument("--full-size", action="store_true", help="workflow settings even with smoke weights")
    parser.add_argument("--gpu", choices=("auto", "yes", "no"), default="auto", help="let ComfyUI use CUDA")
    parser.add_argument("--no-hash", action="store_true", help="check model files by size and structure only")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds the render may take")
    args = parser.parse_args(argv)
    models_dir = models_dir_of(args.comfyui)
    server = None
    try:
        state = prepare_weights(models_dir, check_hash=not args.no_hash)
        settings = demo_settings(state, args.full_size)
        if state.smoke:
            print(smoke_notice(state, models_dir, settings), flush=True)
        else:
            log(f"real weights of {DEMO_SET} found in {models_dir}")
        if args.server:
            client = ComfyClient(args.server)
        else:
            server = start_server(args.comfyui, args.gpu)
            client = ComfyClient(server.url)
        path, info = render(client, settings, args.out, args.assets, args.timeout)
    except DemoError as error:
        print(f"[demo] stopped: {error}", file=sys.stderr)
        return error.exit_code
    finally:
        if server is not None:
            server.stop()
    log(f"wrote {path}")
    log(info.summary())
    if state.smoke:
        log("reminder: rendered with smoke weights (untrained noise); see the notice above for the real files")
    return 0


def start_server(base: Path, gpu: str) -> ComfyServer:
    """Start ComfyUI with the pack on ``base`` (``--cpu`` unless CUDA is available and ``gpu`` allows it)."""
    import torch

    use_gpu = gpu == "yes" or (gpu == "auto" and torch.cuda.is_available())
    log(f"starting ComfyUI ({'GPU' if use_gpu else 'CPU'}) with base directory {base} ...")
    server = ComfyServer(base, cpu=not use_gpu).start()
    log(f"ComfyUI is up at {server.url} (log: {server.log_path})")
    return server


if __name__ == "__main__":
    sys.exit(main())
