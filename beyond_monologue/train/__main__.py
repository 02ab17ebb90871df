"""``python -m beyond_monologue.train run --config train.toml [--dry-run]``: training at scale under torchrun;
``python -m beyond_monologue.train prepare VIDEOS --name NAME --vae ... --audio-encoder ... --text-encoder ...``:
conversation videos -> training-set shards (:mod:`beyond_monologue.train.prepare`).

Launch (one process per GPU; torchrun sets the ranks)::

    torchrun --nproc-per-node 8 -m beyond_monologue.train run --config train.toml

Before any ComfyUI module is imported, ComfyUI's folder goes first on ``sys.path`` (ComfyUI's own
top-level ``nodes`` module must win over this pack's ``nodes/`` folder), ComfyUI's options are set
(``--cpu`` when there is no GPU or it is asked for; ``--base-directory`` as ComfyUI's own flag) and,
on GPUs, ``cuda:LOCAL_RANK`` becomes the current device so that ComfyUI's model management puts
this rank's model there. See docs/TRAINING.md ("Training at scale").
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import BMInputError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m beyond_monologue.train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the duplex adapter (launch with torchrun)")
    run.add_argument("--config", required=True, help="the run's TOML file (docs/TRAINING.md lists its keys)")
    run.add_argument("--dry-run", action="store_true", help="print the plan (sets, clips, steps, per-rank batch, "
                     "memory estimate) and exit")
    run.add_argument("--world-size", type=int, default=None, help="with --dry-run: plan for this many processes "
                     "(default: torchrun's WORLD_SIZE, else 1)")
    run.add_argument("--base-directory", default=None, help="ComfyUI's --base-directory (models/, output/ inside it)")
    run.add_argument("--cpu", action="store_true", help="run on the CPU (gloo) even when a GPU is present")
    _prepare_parser(sub)
    return parser


def _prepare_parser(sub) -> None:
    from .prepare_clips import MAX_SECOND_FACE, MIN_FACE, MIN_SPEECH, MIN_SYNC
    from .prepare_split import SPLITS
    from .prepare_state import DEFAULT_FRAMES, DEFAULT_PROMPT, PrepareOptions

    p = sub.add_parser("prepare", help="conversation videos -> training-set shards (models/bm_training_sets/NAME/) "
                       "and a manifest (output/bm_prepare/NAME/); resumable")
    p.add_argument("videos", help="folder of videos (searched recursively); beside NAME.mp4 optionally NAME.rttm "
                   "(turns) or NAME.conversation.wav (two channels, one speaker each)")
    p.add_argument("--name", required=True, help="run name: shard sub-folder and run folder; the same name resumes")
    p.add_argument("--vae", required=True, help="VAE file in models/vae (the model's: wan2.2_vae.safetensors for Wan2.2-TI2V-5B)")
    p.add_argument("--audio-encoder", required=True, help="wav2vec2 file in models/audio_encoders")
    p.add_argument("--text-encoder", required=True, help="umT5 file in models/text_encoders (loaded as CLIPLoader's 'wan' type)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"the text of every clip (default: {DEFAULT_PROMPT!r})")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"frames per clip, 4n+1 (default {DEFAULT_FRAMES}: "
                   "the training recipe's 21-latent crop)")
    p.add_argument("--fps", type=float, default=PrepareOptions.fps, help="training frame rate (default 25)")
    p.add_argument("--width", type=int, default=PrepareOptions.width, help="training width in pixels (default 1280)")
    p.add_argument("--height", type=int, default=PrepareOptions.height, help="training height in pixels (default 704)")
    p.add_argument("--split", choices=SPLITS, default="auto", help="talk/listen split: auto = turns with NAME.rttm, stereo "
                   "with NAME.conversation.wav, else diarize")
    p.add_argument("--channel", type=int, choices=(1, 2), default=1, help="stereo: the on-screen speaker's channel (1 = left)")
    p.add_argument("--speaker", default="", help="turns: the on-screen speaker's RTTM label (default: who talks most)")
    p.add_argument("--min-speech", type=float, default=MIN_SPEECH, help=f"keep clips where speech covers this share of "
                   f"the frames (default {MIN_SPEECH}, the pack's choice)")
    p.add_argument("--min-face", type=float, default=MIN_FACE, help=f"keep clips where MTCNN finds the face in this share "
                   f"of the frames (default {MIN_FACE}, the pack's choice)")
    p.add_argument("--max-second-face", type=float, default=MAX_SECOND_FACE, help="drop clips where MTCNN finds a "
                   f"second face in more than this share of the frames (default {MAX_SECOND_FACE}, the pack's choice)")
    p.add_argument("--min-sync", type=float, default=MIN_SYNC, help=f"keep talking clips with SyncNet LSE-C at least this "
                   f"(default {MIN_SYNC}, the pack's choice; only with models/bm_evaluation/syncnet_v2.safetensors)")
    p.add_argument("--workers", type=int, default=1, help="videos prepared at once, one process each (default 1)")
    p.add_argument("--base-directory", default=None, help="ComfyUI's --base-directory (models/, output/ inside it)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")


def _prepare(options) -> int:
    from .prepare import prepare_folder
    from .prepare_state import PrepareOptions

    names = ("name", "vae", "audio_encoder", "text_encoder", "prompt", "frames", "fps", "width", "height", "split",
             "channel", "speaker", "min_speech", "min_face", "max_second_face", "min_sync")
    prepare = PrepareOptions(**{key: getattr(options, key) for key in names})
    manifest = prepare_folder(options.videos, prepare, options.workers, options.base_directory, options.cpu)
    return 0 if manifest["summary"]["clips_kept"] else 1


def setup_comfy(base_directory: str | None, cpu: bool) -> None:
    """Put ComfyUI on ``sys.path`` and set its options before its modules load (see the module docstring)."""
    import torch

    from ..comfyui.comfy_launcher import find_comfyui

    comfy_dir = str(find_comfyui())
    if comfy_dir in sys.path:
        sys.path.remove(comfy_dir)
    sys.path.insert(0, comfy_dir)
    import comfy.cli_args

    args = comfy.cli_args.args
    args.cpu = cpu or not torch.cuda.is_available()
    if base_directory:
        args.base_directory = os.path.abspath(base_directory)
    if not args.cpu and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    import comfy.model_management  # picks the device now, with the options above


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a BMInputError, printed as one line)."""
    options = _parser().parse_args(argv)
    setup_comfy(options.base_directory, options.cpu)
    if options.command == "prepare":
        try:
            return _prepare(options)
        except BMInputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    from .distributed import ADAPTER_FOLDER, SET_FOLDER, model_file, train
    from .run_config import load_config
    from .run_plan import plan_text

    try:
        config = load_config(options.config)
        if options.dry_run:
            world = options.world_size or int(os.environ.get("WORLD_SIZE", "1"))
            sets = [(name, model_file(SET_FOLDER, name, "training_sets")) for name in config.training_sets]
            start = model_file(ADAPTER_FOLDER, config.continue_from, "continue_from") if config.continue_from else None
            print(plan_text(config, world, model_file("diffusion_models", config.model, "model"), sets, start))
            return 0
        path = train(config)
    except BMInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if path is not None:
        print(f"exported adapter: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
