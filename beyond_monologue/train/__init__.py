"""Training stage: clips (video latents, talk/listen features, reference, text) in, a trained duplex adapter out.

The same training step serves the ComfyUI nodes (one GPU, a creator's own clips) and ``torchrun``
at scale (``python -m beyond_monologue.train run --config train.toml``). The base model always comes from ComfyUI's own loaders, so what is trained
is exactly what BM Apply Duplex Adapter attaches.

Modules: ``samples`` (``TrainingSample``, ``TrainingSet``, ``save_set``/``load_set``), ``recipe``
(``TrainRecipe``: paper facts and the pack's choices), ``step`` (``plan_step``, ``backward_clip``:
one clip's flow-matching loss), ``trainer`` (``train_adapter``: the loop with AdamW and EMA; its
``start_run`` / ``draw_clips`` / ``finish_step`` are shared with the torchrun run), ``run_config``
(``train.toml`` -> ``RunConfig``), ``distributed`` (the torchrun run: DDP, DCP checkpoints, export),
``run_plan`` (``--dry-run``); ``prepare`` (``python -m beyond_monologue.train prepare``: conversation videos ->
shards and a manifest) with ``prepare_state`` (options, folders, markers, prompt), ``prepare_video`` (one
video), ``prepare_media`` (finding and decoding videos), ``prepare_split`` (the on-screen
speaker's talk/listen) and ``prepare_clips`` (speech/face/sync filters, the face-centred crop).
"""
