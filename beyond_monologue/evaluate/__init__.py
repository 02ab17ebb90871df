"""Evaluation stage: a rendered avatar video (frames, fps), its talk/listen audio and the reference
portrait in, metrics out: lip-sync (LSE-C/LSE-D), identity (CSIM) and the pack's listening metrics.

Used by ``BM Evaluate Avatar`` (``nodes/evaluate.py``), by ``python -m beyond_monologue.evaluate``
over a folder of rendered videos, and by a training loop as validation (call
``avatar_metrics.evaluate_avatar``: one implementation for all three). Nothing here downloads: the
SyncNet and face-embedding weights are safetensors in ComfyUI's ``models/bm_evaluation`` folder,
converted once from their public files by ``python -m beyond_monologue.evaluate convert``; the face
detector (MTCNN) ships its weights inside the facenet-pytorch wheel.

Modules: ``syncnet`` (the SyncNet network of joonson/syncnet_python), ``metric_weights`` (file
names, the folder, safetensors loaders, missing-file reasons), ``convert`` (public checkpoints -> safetensors, offline, ``weights_only=True``), ``mfcc`` (the
SyncNet audio features with torchaudio), ``lip_sync`` (face crops, SyncNet embeddings, offset search,
LSE-C/LSE-D), ``face_track`` (MTCNN per frame, gap filling), ``head_motion`` (per-frame motion
normalised by face size), ``identity`` (InceptionResnetV1 loader, CSIM), ``listening`` (the pack's
listening metrics), ``avatar_metrics`` (everything on one video -> a JSON-ready dict), ``plot`` (the
metrics over time as an image), ``video_files`` (reading rendered videos for the command),
``__main__`` (the command: ``convert`` and ``videos``).
"""
