"""Text, talking and listening guidance: which model evaluations (anchors) a step needs and how to mix them.

Four anchors, each one evaluation of the (adapter-patched) model on the same input, nested from
fully unconditional to fully conditional:

    u = D(x | negative text, null talk, null listen)
    l = D(x | negative text, null talk, listen)
    t = D(x | negative text, talk,      listen)
    c = D(x | positive text, talk,      listen)

    out = u + s_listen (l - u) + s_talk (t - l) + s_text (c - t)
        = s_text c + (s_talk - s_text) t + (s_listen - s_talk) l + (1 - s_listen) u

``negative text`` is the sampler's ``negative`` CONDITIONING (ComfyUI's usual "negative prompt"
slot: an empty prompt gives plain text CFG); ``null`` streams are the Audio Q-Formers' learned
unconditional tokens (Beyond Monologue, arXiv 2604.10367, Sec. 3.2.1: a learned null embedding
instead of zero audio; for the public InfiniteTalk adapter the projection of zero audio, as in
its own code). The weights always sum to 1, so the mix is the same on the denoised prediction,
on the velocity or on the noise. With one stream (InfiniteTalk: talk only) ``l = u`` and the
formula is InfiniteTalk's own ``u + s_audio (t - u) + s_text (c - t)``
(MeiGen-AI/InfiniteTalk ``generate_infinitetalk``: ``text_cfg``, ``audio_cfg``).

Anchors whose weight is 0 are not evaluated: all scales 1 needs one evaluation per step (``c``,
the distilled-LoRA case), ``s_listen = s_talk`` drops ``l``, and so on. The order of the paths
(listen, then talk, then text) follows the paper's training order (talking first, listening added
later, Sec. 3.3) and InfiniteTalk's (audio inside text).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.mhgk import STREAMS

POSITIVE, NEGATIVE = "positive", "negative"
WEIGHT_EPS = 1e-9


@dataclass(frozen=True)
class GuidanceScales:
    """Guidance scales (1 = no guidance on that path; 0 = that condition is ignored)."""

    text: float = 5.0
    talk: float = 4.0
    listen: float = 3.0


@dataclass(frozen=True)
class Anchor:
    """One model evaluation per step and its weight in the mix.

    Attributes:
        text: ``"positive"`` or ``"negative"``: which CONDITIONING this evaluation uses.
        modes: stream -> ``"on"`` or ``"null"`` (for :attr:`beyond_monologue.sampling.duplex_call.DuplexCall.branches`).
        weight: coefficient of this evaluation in ``out``.
    """

    text: str
    modes: tuple[tuple[str, str], ...]
    weight: float


def guidance_anchors(scales: GuidanceScales, streams: tuple[str, ...] = STREAMS) -> tuple[Anchor, ...]:
    """The anchors with a non-zero weight, fully conditional first (see module docstring).

    Args:
        scales: text, talk and listen guidance scales.
        streams: the adapter's streams; a stream it lacks is the same in every anchor, so anchors
            that then coincide are merged (their weights added).

    Returns:
        1 to 4 anchors in the order c, t, l, u (cond index 0 = the positive prompt, as in
        ComfyUI's CFGGuider); weights sum to 1.
    """
    full = [
        (POSITIVE, {"talk": "on", "listen": "on"}, scales.text),
        (NEGATIVE, {"talk": "on", "listen": "on"}, scales.talk - scales.text),
        (NEGATIVE, {"talk": "null", "listen": "on"}, scales.listen - scales.talk),
        (NEGATIVE, {"talk": "null", "listen": "null"}, 1.0 - scales.listen),
    ]
    merged: dict[tuple, float] = {}
    for text, modes, weight in full:
        key = (text, tuple((s, modes[s]) for s in STREAMS if s in streams))
        merged[key] = merged.get(key, 0.0) + weight
    return tuple(Anchor(text, modes, weight) for (text, modes), weight in merged.items() if abs(weight) > WEIGHT_EPS)


def anchor_branches(anchors: tuple[Anchor, ...]) -> dict[int, dict[str, str]]:
    """``DuplexCall.branches`` for a guider that evaluates ``anchors`` as cond indices 0, 1, ..."""
    return {index: dict(anchor.modes) for index, anchor in enumerate(anchors) if any(m != "on" for _, m in anchor.modes)}
