"""Sampling stage: a patched MODEL, prompts, duplex audio and a portrait in, a long video latent out.

Plans sliding windows on one latent clock, places the reference (guide frame or image input), mixes
text/talking/listening guidance in a ComfyUI guider and runs ComfyUI's own samplers window by window.

Modules: ``windows`` (``plan_windows``), ``reference`` (``encode_reference``), ``guidance``
(``GuidanceScales``, the anchors a step needs), ``duplex_call`` (the per-call model input),
``duplex_guider`` (``DuplexGuider``), ``apg`` (adaptive projected guidance), ``schedule`` (the official
InfiniteTalk sigmas), ``long_video`` (``sample_long_video``).
"""
