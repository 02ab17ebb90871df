"""The training recipe: the paper's published numbers and the pack's own choices where it gives none.

Paper (arXiv 2604.10367 §4.1 via the secondary summary, /shared/research/papers.md §1.4-1.5): flow
matching on the Wan backbone; stage 1 "talking priority" trains the Talking adapter (100k steps),
stage 2 "listening fusion" adds the Listening adapter (30k steps); AdamW, bf16, EMA 0.999; learning
rate 1e-5 for new parameters, 2e-6 for trainable backbone parameters; global batch 32 on 16 GPUs;
arbitrary-position guided training (a clean latent at a sampled index is the guide, with its RoPE
index) combined with diffusion forcing (independent noise levels per temporal chunk).

The pack's choices (not published; every one is a field here and an input of the training node):

* ``dropout_talk`` / ``dropout_listen`` / ``dropout_text`` = 0.1 each, independent: the usual
  classifier-free-guidance rate; they train the learned nulls that BM Sampler's guidance uses
  (u, l, t, c anchors need every combination).
* ``df_probability`` = 0.5, ``df_chunk_latents`` = 1: half the steps give every latent frame its
  own noise level (diffusion forcing at the finest grain the Wan2.2 per-frame timestep allows);
  the other half share one level, which is what a sampling step sees.
* ``clean_prefix_probability`` = 0.25, up to 3 clean latents: the motion latents BM Sampler
  carries into the next window (and Wan2.2's clean first latent for image-to-video) are clean
  frames with timestep 0; these steps rehearse exactly that.
* ``guide_probability`` = 0.8, the guide index uniform over ``0 .. n`` for an ``n``-latent crop:
  index ``i < n`` uses the clip's own clean latent ``i`` (the paper's rule), index ``n`` (one past
  the end) uses the sample's reference frame, which is where BM Sampler puts the portrait.
* ``window_latents`` = 21 (81 frames, BM Sampler's default window): longer clips are cropped at a
  random latent-aligned start.
* backbone: frozen by default (``lr_backbone`` = 0). The paper trains "backbone parameters" at
  2e-6 without saying which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

STAGES = ("talking", "both")
OPTIMIZERS = ("AdamW", "Adam", "SGD")


@dataclass(frozen=True)
class TrainRecipe:
    """Every setting of a training run except the data and the model.

    Attributes:
        stage: ``"talking"`` (stage 1: the Listening branch is off and frozen) or ``"both"``.
        steps: optimizer steps.
        batch_size: clips per optimizer step (one forward/backward per clip, gradients summed).
        grad_accumulation: optimizer steps are taken every this many batches.
        lr_new / lr_backbone: learning rates of the adapter and of backbone parameters (0 = frozen).
        optimizer: one of :data:`OPTIMIZERS`.
        weight_decay: AdamW weight decay.
        ema_decay: EMA of the adapter weights (0 = off); the output is the EMA copy when on.
        seed: all randomness of the run (crops, noise levels, dropout, noise).
        dropout_talk / dropout_listen / dropout_text: probability of replacing a stream by its
            learned null tokens / the text by the negative prompt, independently per clip.
        df_probability / df_chunk_latents: diffusion forcing (see module docstring).
        clean_prefix_probability / max_clean_prefix: clean leading latents (motion latents).
        guide_probability: steps with a guide latent (see module docstring).
        window_latents: crop length in latent frames.
    """

    stage: str = "both"
    steps: int = 100
    batch_size: int = 1
    grad_accumulation: int = 1
    lr_new: float = 1e-5
    lr_backbone: float = 0.0
    optimizer: str = "AdamW"
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    seed: int = 0
    dropout_talk: float = 0.1
    dropout_listen: float = 0.1
    dropout_text: float = 0.1
    df_probability: float = 0.5
    df_chunk_latents: int = 1
    clean_prefix_probability: float = 0.25
    max_clean_prefix: int = 3
    guide_probability: float = 0.8
    window_latents: int = 21

    def __post_init__(self):
        problems = []
        if self.stage not in STAGES:
            problems.append(("stage", f"is {self.stage!r}", f"use one of {STAGES}"))
        if self.optimizer not in OPTIMIZERS:
            problems.append(("optimizer", f"is {self.optimizer!r}", f"use one of {OPTIMIZERS}"))
        for name in ("steps", "batch_size", "grad_accumulation", "df_chunk_latents", "window_latents"):
            if getattr(self, name) < 1:
                problems.append((name, f"is {getattr(self, name)}", "use 1 or more"))
        for name in ("dropout_talk", "dropout_listen", "dropout_text", "df_probability", "clean_prefix_probability",
                     "guide_probability", "ema_decay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append((name, f"is {getattr(self, name)}", "use a value in 0..1"))
        if self.lr_new <= 0 or self.lr_backbone < 0:
            problems.append(("lr_new", f"is {self.lr_new} (backbone {self.lr_backbone})", "use lr_new > 0 and lr_backbone >= 0"))
        if self.window_latents < 2:
            problems.append(("window_latents", f"is {self.window_latents}", "use 2 or more latent frames"))
        if problems:
            from ..errors import BMInputError

            name, problem, fix = problems[0]
            raise BMInputError(name, problem + ".", fix + ".")

    def to_dict(self) -> dict:
        """JSON-ready form (logs, metadata)."""
        return asdict(self)

    def dropout(self) -> dict[str, float]:
        """``{"talk": p, "listen": p, "text": p}``."""
        return {"talk": self.dropout_talk, "listen": self.dropout_listen, "text": self.dropout_text}
