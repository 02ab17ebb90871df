"""Video stage: video latents in, frames and a VIDEO with the conversation's audio out.

Decodes Wan latents with ComfyUI's own VAE one latent frame at a time (memory flat in length), fits
the soundtrack to the frames, and composes two avatars into one dyadic video.

Modules: ``video_decode`` (``decode_video``), ``video_audio`` (``fit_audio_to_frames``), ``compose``
(``compose_dyadic``), ``media_info`` (``probe_video``, what a saved file holds).
"""
