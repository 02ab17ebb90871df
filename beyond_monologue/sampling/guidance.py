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

Text scale 1 (the official LoRA recipe, text 1 / audio 2): there is no text path, so every anchor
uses the positive prompt, as MeiGen-AI/InfiniteTalk ``wan/multitalk.py`` does when
``math.isclose(text_guide_scale, 1.0)``: ``out = u' + s_listen (l' - u') + s_talk (c - l')`` with
``u'``, ``l'`` the positive-prompt versions of ``u``, ``l``; with one stream exactly the official
two passes ``drop_audio + s_audio (cond - drop_audio)``. Otherwise the formula above, which for
one stream is the official three passes ``uncond + s_text (cond - drop_text) + s_audio (drop_text
- uncond)``.

Adaptive projected guidance (APG, arXiv 2410.02416; InfiniteTalk's ``--use_apg``) writes the same
chain of anchors as ``c + sum_k (s_k - 1) P_k(d_k)`` over the paths ``d_k`` = upper minus lower
anchor (:func:`guidance_paths`), where ``P_k`` is the momentum-averaged, norm-clipped difference
with its component along ``c`` removed (:mod:`beyond_monologue.sampling.apg`).
"""

from __future__ import annotations

import itertools
import math
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


@dataclass(frozen=True)
class GuidancePath:
    """One guidance path: ``scale`` times (anchor ``upper`` minus anchor ``lower``), indices into the anchors."""

    name: str
    scale: float
    upper: int
    lower: int


def text_guided(scales: GuidanceScales) -> bool:
    """False when the text scale is 1 (``math.isclose``, as the official code tests it): no text path."""
    return not math.isclose(scales.text, 1.0)


def _chain(scales: GuidanceScales, streams: tuple[str, ...]) -> tuple[list[tuple], list[tuple[str, float]]]:
    """Anchor keys ``(text, modes)`` from fully conditional to unconditional and the (name, scale) of each step."""
    if text_guided(scales):
        full = [(POSITIVE, "on", "on"), (NEGATIVE, "on", "on"), (NEGATIVE, "null", "on"), (NEGATIVE, "null", "null")]
        paths = [("text", scales.text), ("talk", scales.talk), ("listen", scales.listen)]
    else:
        full = [(POSITIVE, "on", "on"), (POSITIVE, "null", "on"), (POSITIVE, "null", "null")]
        paths = [("talk", scales.talk), ("listen", scales.listen)]
    keys = [(text, tuple((s, m) for s, m in zip(STREAMS, (talk, listen), strict=True) if s in streams))
            for text, talk, listen in full]
    return keys, paths


def guidance_anchors(scales: GuidanceScales, streams: tuple[str, ...] = STREAMS) -> tuple[Anchor, ...]:
    """The anchors with a non-zero weight, fully conditional first (see module docstring).

    Args:
        scales: text, talk and listen guidance scales.
        streams: the adapter's streams; a stream it lacks is the same in every anchor, so anchors
            that then coincide are merged (their weights added).

    Returns:
        1 to 4 anchors in the order c, t, l, u (cond index 0 = the positive prompt, as in
        ComfyUI's CFGGuider); weights sum to 1. Text scale 1: 1 to 3 anchors, all with the
        positive prompt.
    """
    keys, paths = _chain(scales, streams)
    scales_in_order = [scale for _, scale in paths]
    weights = [scales_in_order[0]] + [b - a for a, b in itertools.pairwise(scales_in_order)] + [1.0 - scales_in_order[-1]]
    merged: dict[tuple, float] = {}
    for key, weight in zip(keys, weights, strict=True):
        merged[key] = merged.get(key, 0.0) + weight
    return tuple(Anchor(text, modes, weight) for (text, modes), weight in merged.items() if abs(weight) > WEIGHT_EPS)


def guidance_paths(scales: GuidanceScales, streams: tuple[str, ...] = STREAMS) -> tuple[tuple[Anchor, ...], tuple[GuidancePath, ...]]:
    """The anchors and paths of the nested formula as ``c + sum_k (s_k - 1) (upper_k - lower_k)`` (for APG).

    Paths whose scale is 1 or whose anchors coincide (a stream the adapter lacks) are left out, and
    so are the anchors only they would need. Anchor weights are 0 (APG does not mix linearly).

    Returns:
        ``(anchors, paths)``: anchor 0 is always the fully conditional ``c``; each path's ``upper`` /
        ``lower`` index into the anchors.
    """
    keys, steps = _chain(scales, streams)
    used: list[tuple] = [keys[0]]
    paths = []
    for (name, scale), upper, lower in zip(steps, keys[:-1], keys[1:], strict=True):
        if upper == lower or abs(scale - 1.0) <= WEIGHT_EPS:
            continue
        for key in (upper, lower):
            if key not in used:
                used.append(key)
        paths.append(GuidancePath(name, scale, used.index(upper), used.index(lower)))
    return tuple(Anchor(text, modes, 0.0) for text, modes in used), tuple(paths)


def anchor_branches(anchors: tuple[Anchor, ...]) -> dict[int, dict[str, str]]:
    """``DuplexCall.branches`` for a guider that evaluates ``anchors`` as cond indices 0, 1, ..."""
    return {index: dict(anchor.modes) for index, anchor in enumerate(anchors) if any(m != "on" for _, m in anchor.modes)}
