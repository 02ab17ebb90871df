"""Listening metrics: does the avatar react while the other person speaks, without mouthing their words?

These are the pack's own metrics (Beyond Monologue judged listening only in a user study; no public
code defines them). Inputs are per-frame series on the video clock: head motion and mouth activity
(:mod:`.head_motion`) and the voice activity of the talk and listen streams (0..1).

Spans (the pack's choice: activity above 0.5 counts as speech): *talk* = the avatar's own stream is
active; *listen-only* = the listen stream is active and the talk stream is not; *silent* = neither.

* ``head_motion_energy_listen_only`` / ``_silent``: mean squared head speed ((face sizes / s)^2) in
  those spans; ``listen_to_silent_motion_ratio`` = their ratio (> 1: the avatar moves more while
  listening than in silence).
* ``listen_motion_correlation`` / ``listen_motion_lag_s``: the largest Pearson correlation between
  the listen stream's activity at frame ``t`` and head speed at ``t + lag`` for lags 0..1 s (the
  pack's choice: reactions follow the speech within a second), over frames where the avatar does
  not talk at either time; -1..1.
* ``mouth_activity_listen_only`` / ``_talk`` and ``listen_to_talk_mouth_ratio``: mean mouth activity
  in the two spans and their ratio (well below 1: the avatar does not mouth the other person's words).

A value needs at least ``MIN_SPAN_S`` seconds (0.5 s, the pack's choice) in each span it uses;
otherwise it is reported as unavailable with the reason, never as a number from nothing.
"""

from __future__ import annotations

import numpy as np

ACTIVE = 0.5
MIN_SPAN_S = 0.5
MAX_LAG_S = 1.0


def spans(talk_activity: np.ndarray, listen_activity: np.ndarray) -> dict[str, np.ndarray]:
    """``[T]`` activities (0..1) -> boolean ``[T]`` masks ``talk``, ``listen_only``, ``silent``."""
    talk = np.asarray(talk_activity) > ACTIVE
    listen = np.asarray(listen_activity) > ACTIVE
    return {"talk": talk, "listen_only": listen & ~talk, "silent": ~listen & ~talk}


def _mean_in(values: np.ndarray, mask: np.ndarray, fps: float, name: str, unavailable: dict) -> float | None:
    if mask.sum() < MIN_SPAN_S * fps:
        unavailable[name] = f"needs at least {MIN_SPAN_S} s in its span; the video has {mask.sum() / fps:.2f} s"
        return None
    return float(np.mean(values[mask]))


def _ratio(a: float | None, b: float | None, name: str, unavailable: dict) -> float | None:
    if a is None or b is None:
        unavailable[name] = "one of its two spans is too short"
        return None
    if b <= 0:
        unavailable[name] = "the denominator span has no activity at all (a frozen face?)"
        return None
    return a / b


def lagged_correlation(listen_activity: np.ndarray, motion: np.ndarray, talk: np.ndarray, fps: float
                       ) -> tuple[float, float] | str:
    """Largest correlation of listen activity at ``t`` with head speed at ``t + lag``, lag 0..1 s.

    Returns ``(correlation, lag_s)`` or the reason it cannot be computed (a string)."""
    best = None
    for lag in range(round(MAX_LAG_S * fps) + 1):
        count = len(motion) - lag
        if count < 2:
            break
        keep = ~talk[:count] & ~talk[lag:lag + count]
        if keep.sum() < MIN_SPAN_S * fps:
            continue
        a, b = listen_activity[:count][keep], motion[lag:lag + count][keep]
        if a.std() == 0 or b.std() == 0:
            continue
        value = float(np.corrcoef(a, b)[0, 1])
        if best is None or value > best[0]:
            best = (value, lag / fps)
    if best is None:
        return ("needs listen activity and head motion that both vary over at least "
                f"{MIN_SPAN_S} s of frames where the avatar is not talking")
    return best


def listening_metrics(motion: np.ndarray, mouth: np.ndarray, talk_activity: np.ndarray,
                      listen_activity: np.ndarray, fps: float) -> dict:
    """The listening metrics of one video (see the module docstring).

    Args:
        motion: ``[T]`` head speed (face sizes / s); mouth: ``[T]`` mouth activity (grey levels / s);
        talk_activity / listen_activity: ``[T]`` voice activity 0..1 per frame; fps: frames per second.

    Returns:
        ``{"spans_s": {span: seconds}, metric: float | None, ..., "unavailable": {metric: reason}}``.
    """
    masks = spans(talk_activity, listen_activity)
    unavailable: dict[str, str] = {}
    energy = np.asarray(motion, dtype=np.float64) ** 2
    listen_energy = _mean_in(energy, masks["listen_only"], fps, "head_motion_energy_listen_only", unavailable)
    silent_energy = _mean_in(energy, masks["silent"], fps, "head_motion_energy_silent", unavailable)
    mouth_listen = _mean_in(np.asarray(mouth), masks["listen_only"], fps, "mouth_activity_listen_only", unavailable)
    mouth_talk = _mean_in(np.asarray(mouth), masks["talk"], fps, "mouth_activity_talk", unavailable)
    lagged = lagged_correlation(np.asarray(listen_activity, dtype=np.float64), np.asarray(motion, dtype=np.float64),
                                masks["talk"], fps)
    if isinstance(lagged, str):
        unavailable["listen_motion_correlation"] = lagged
        lagged = (None, None)
    return {
        "spans_s": {name: float(mask.sum() / fps) for name, mask in masks.items()},
        "head_motion_energy_listen_only": listen_energy,
        "head_motion_energy_silent": silent_energy,
        "listen_to_silent_motion_ratio": _ratio(listen_energy, silent_energy, "listen_to_silent_motion_ratio", unavailable),
        "listen_motion_correlation": lagged[0],
        "listen_motion_lag_s": lagged[1],
        "mouth_activity_listen_only": mouth_listen,
        "mouth_activity_talk": mouth_talk,
        "listen_to_talk_mouth_ratio": _ratio(mouth_listen, mouth_talk, "listen_to_talk_mouth_ratio", unavailable),
        "unavailable": unavailable,
    }
