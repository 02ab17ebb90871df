"""``python -m beyond_monologue.train run --config train.toml [--dry-run]``: training at scale under torchrun.

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
    return parser


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
