"""Audio stage: a conversation recording in, the avatar's two aligned speech streams out.

Takes ComfyUI ``AUDIO`` (one conversation, or two streams) and gives the talk (the avatar's own
speech) and listen (the interlocutor's) streams, split by stereo channel, diarization (Silero VAD +
Resemblyzer) or given turns, optionally separated from background (Mel-Band RoFormer), encoded with
ComfyUI's wav2vec2 into ``DuplexAudio`` (the ``BM_DUPLEX_AUDIO`` socket value).

Modules: ``audio_checks`` (AUDIO validation, resampling), ``turns`` (turn text/JSON, masks),
``conversation`` (stereo/turns split), ``vad`` (Silero, ONNX or TorchScript), ``diarization`` (with
speaker-count estimation), ``voice_encoder`` (Resemblyzer's encoder without its package), ``kmeans``
(torch), ``separation`` (chunked
overlap-add), ``melband_roformer`` (the separation model), ``speech_features`` (wav2vec2 features per
video frame), ``duplex_audio`` (``DuplexAudio``), ``activity_timeline`` (the web timeline payload).
"""
