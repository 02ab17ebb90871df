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
"""

from __future__ import annotations

import comfy.samplers

from .guidance import NEGATIVE, POSITIVE, Anchor


class DuplexGuider(comfy.samplers.CFGGuider):
    """CFG guider over 1-4 anchors (each a CONDITIONING + audio branch modes, with a weight).

    Args:
        model_patcher: the adapter-patched MODEL, with the window's ``bm_duplex`` call set whose
            ``branches`` match ``anchors``.
        anchors: from :func:`beyond_monologue.sampling.guidance.guidance_anchors`.
    """

    def __init__(self, model_patcher, anchors: tuple[Anchor, ...]):
        super().__init__(model_patcher)
        if not anchors:
            raise ValueError("DuplexGuider needs at least one anchor")
        self.anchors = tuple(anchors)

    def set_conds(self, positive, negative):
        """``positive`` (the prompt) and ``negative`` (the null-text anchors), ComfyUI CONDITIONING lists."""
        self.inner_set_conds({POSITIVE: positive, NEGATIVE: negative})

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 -- ComfyUI's signature
        """The guided denoised prediction ``sum_i w_i D(x | anchor_i)`` (same shape and dtype as ComfyUI's CFG)."""
        conds = [self.conds[anchor.text] for anchor in self.anchors]
        outs = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        mixed = outs[0] * self.anchors[0].weight
        for anchor, out in zip(self.anchors[1:], outs[1:], strict=True):
            mixed = mixed + out * anchor.weight
        for function in model_options.get("sampler_post_cfg_function", []):
            mixed = function({"denoised": mixed, "cond": conds[0], "uncond": conds[-1],
                              "cond_scale": self.anchors[0].weight, "model": self.inner_model,
                              "cond_denoised": outs[0], "uncond_denoised": outs[-1], "sigma": timestep,
                              "model_options": model_options, "input": x})
        return mixed
