"""ComfyUI guider for text + talking + listening guidance (the formula is in :mod:`beyond_monologue.sampling.guidance`).

:class:`DuplexGuider` is a ``comfy.samplers.CFGGuider`` whose ``predict_noise`` evaluates the
guidance anchors in one ``comfy.samplers.calc_cond_batch`` call (ComfyUI batches them as far as
memory allows, applies hooks, area/mask conds, wrappers and ``model_function_wrapper`` as usual)
and mixes them. Everything else (model loading, ``process_conds``, the sampler, noise, the
denoise-mask/inpaint path) is ComfyUI's own. The cond index of anchor ``i`` is ``i``; the
patched model learns which audio streams are null for which index from
``DuplexCall.branches`` (:func:`beyond_monologue.sampling.guidance.anchor_branches`), which the sampler
sets on the same MODEL clone.

``sampler_post_cfg_function`` hooks run on the mixed result as in ComfyUI's ``cfg_function``,
with the fully conditional anchor as ``cond_denoised`` and the last anchor (``u``: negative
prompt, both audio streams null, when its weight is not zero) as ``uncond_denoised``; the CFG++
samplers (``*_cfg_pp``) need exactly this. With a single anchor (all scales 1) both are that
anchor's prediction. ``sampler_cfg_function`` and ``sampler_pre_cfg_function`` (e.g. from
CFG-rescale nodes) replace or edit a cond/uncond pair's mix and are not applied here.

With ``apg`` set the anchors and paths come from :func:`beyond_monologue.sampling.guidance.guidance_paths`
and the mix is adaptive projected guidance on the velocity ``v = (x - denoised) / sigma`` (the flow
model's own output, which the official code guides), converted back to a denoised prediction.
One guider serves one window, so the APG momentum restarts every window as it does per clip in
the official generator.

Anchors that share a CONDITIONING (e.g. the negative prompt with talk on and with talk null) are
passed as copies with their own ``uuid`` (:func:`anchor_conds`): ComfyUI's EasyCache (and any tool
that keys state by ``transformer_options["uuids"]``) otherwise stores one cached output for both,
and on a cached step the audio guidance term, their difference, would become zero.
"""

from __future__ import annotations

import uuid

import comfy.samplers

from .apg import APGSettings, MomentumBuffer, projected_update
from .guidance import NEGATIVE, POSITIVE, Anchor, GuidancePath


class DuplexGuider(comfy.samplers.CFGGuider):
    """CFG guider over 1-4 anchors (each a CONDITIONING + audio branch modes, with a weight).

    Args:
        model_patcher: the adapter-patched MODEL, with the window's ``bm_duplex`` call set whose
            ``branches`` match ``anchors``.
        anchors: from :func:`beyond_monologue.sampling.guidance.guidance_anchors` (linear CFG) or the
            anchors of :func:`~beyond_monologue.sampling.guidance.guidance_paths` (APG).
        paths / apg: APG only: the paths of ``guidance_paths`` and the APG constants.
    """

    def __init__(self, model_patcher, anchors: tuple[Anchor, ...], paths: tuple[GuidancePath, ...] = (),
                 apg: APGSettings | None = None):
        super().__init__(model_patcher)
        if not anchors:
            raise ValueError("DuplexGuider needs at least one anchor")
        self.anchors = tuple(anchors)
        self.paths = tuple(paths)
        self.apg = apg
        self.buffers = [MomentumBuffer(apg.momentum) for _ in self.paths] if apg is not None else []

    def set_conds(self, positive, negative):
        """``positive`` (the prompt) and ``negative`` (the null-text anchors), ComfyUI CONDITIONING lists."""
        self.inner_set_conds({POSITIVE: positive, NEGATIVE: negative})

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 -- ComfyUI's signature
        """The guided denoised prediction ``sum_i w_i D(x | anchor_i)`` (same shape and dtype as ComfyUI's CFG)."""
        conds = anchor_conds([self.conds[anchor.text] for anchor in self.anchors])
        outs = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        if self.apg is not None:
            mixed = self._projected(x, timestep, outs)
        else:
            mixed = outs[0] * self.anchors[0].weight
            for anchor, out in zip(self.anchors[1:], outs[1:], strict=True):
                mixed = mixed + out * anchor.weight
        for function in model_options.get("sampler_post_cfg_function", []):
            mixed = function({"denoised": mixed, "cond": conds[0], "uncond": conds[-1],
                              "cond_scale": self.anchors[0].weight, "model": self.inner_model,
                              "cond_denoised": outs[0], "uncond_denoised": outs[-1], "sigma": timestep,
                              "model_options": model_options, "input": x})
        return mixed

    def _projected(self, x, sigma, outs):
        """APG on velocities: ``v_c + sum_k (s_k - 1) P_k(v_upper - v_lower)``, returned as a denoised prediction."""
        if not self.paths:
            return outs[0]
        s = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x)
        velocities = [(x - out) / s for out in outs]
        guided = velocities[0]
        for path, buffer in zip(self.paths, self.buffers, strict=True):
            diff = velocities[path.upper] - velocities[path.lower]
            guided = guided + (path.scale - 1.0) * projected_update(diff, velocities[0], self.apg, buffer)
        return x - guided * s


def anchor_conds(conds: list[list[dict]]) -> list[list[dict]]:
    """The anchors' processed conds, with a repeated CONDITIONING given its own stable ``uuid``.

    Args:
        conds: per anchor, ComfyUI's processed cond list (dicts with ``"uuid"``, after ``process_conds``).

    Returns:
        The same lists; the second and later uses of a list are shallow copies whose dicts carry
        ``uuid5(original uuid, "bm-anchor-<i>")`` (the same at every step, so caches keyed by it stay
        consistent). Everything else in the dicts is shared.
    """
    seen, out = set(), []
    for index, cond in enumerate(conds):
        if id(cond) in seen:
            cond = [{**c, "uuid": uuid.uuid5(c["uuid"], f"bm-anchor-{index}")} if c.get("uuid") else c for c in cond]
        else:
            seen.add(id(cond))
        out.append(cond)
    return out
