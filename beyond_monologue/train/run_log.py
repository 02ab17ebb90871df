"""What a ``torchrun`` training run reports each optimizer step: ``log.jsonl`` always, TensorBoard when installed.

Rank 0 writes one JSON line per step to ``<run folder>/log.jsonl`` (``loss``, ``clip_losses`` in
global clip order, ``loss_by_case`` per stream-dropout case, ``lr``, ``lr_backbone``,
``world_size``, ``seconds``, ``clips_per_s``, ``peak_memory_mib_rank0``) and, when the
``tensorboard`` package is installed (``torch.utils.tensorboard`` needs it; the pack does not
require it), the same numbers as scalars under ``<run folder>/tensorboard`` (``loss``,
``loss_by_case/<case>``, ``lr/new``, ``lr/backbone``, ``throughput/clips_per_s``,
``memory/peak_mib_rank0``), flushed every step so that a killed run loses nothing already logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .trainer import peak_memory_mib


class RunLog:
    """The run's step log (rank 0 only).

    Args:
        folder: the run folder (``<ComfyUI output>/bm_train/<output>``), created by the caller.
        world: the world size (logged with every step).
    """

    def __init__(self, folder: Path, world: int):
        self.path, self.world = folder / "log.jsonl", world
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logging.info("BeyondMonologue: tensorboard is not installed; the run logs to %s only.", self.path)
        else:
            self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))

    def step(self, step: int, clips, losses: list[float], optimizer, seconds: float, device) -> dict:
        """Log optimizer step ``step`` (1-based): ``clips`` are its ``(sample, plan)`` pairs, ``losses`` theirs. Returns the JSON line."""
        cases: dict[str, list[float]] = {}
        for (_, plan), value in zip(clips, losses, strict=True):
            cases.setdefault(plan.case, []).append(value)
        groups = optimizer.param_groups
        line = {"step": step, "loss": sum(losses) / len(losses), "clip_losses": losses,
                "loss_by_case": {case: sum(v) / len(v) for case, v in sorted(cases.items())},
                "lr": groups[0]["lr"], "lr_backbone": groups[1]["lr"] if len(groups) > 1 else 0.0,
                "world_size": self.world, "seconds": seconds, "clips_per_s": len(losses) / seconds,
                "peak_memory_mib_rank0": peak_memory_mib(device)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        if self.writer is not None:
            scalars = {"loss": line["loss"], "lr/new": line["lr"], "lr/backbone": line["lr_backbone"],
                       "throughput/clips_per_s": line["clips_per_s"], "memory/peak_mib_rank0": line["peak_memory_mib_rank0"]}
            scalars.update({f"loss_by_case/{case}": value for case, value in line["loss_by_case"].items()})
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()
        return line

    def close(self) -> None:
        """Close the TensorBoard writer (the JSONL file is closed after every line)."""
        if self.writer is not None:
            self.writer.close()
