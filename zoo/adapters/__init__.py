"""Adapters: one class per model family, each turning a card and its files into ``embed(inputs,
task_instruction)``. ``base`` holds what every adapter shares (option checks, prompts, normalization,
truncation, quantization) with its machinery in underscore modules: ``_calls`` (the call lock),
``_progress`` (the per-call context and progress bar), ``_inputs`` (items and prompt formatting),
``_cached`` (``embed(cache=...)``), ``_st_calls`` and ``_st_inputs`` (sentence-transformers' ``encode``
and ``similarity``); ``lora`` merges LoRA/DoRA adapters into the vision-language
backbones; ``imagenet`` is the label set of the image classifiers.

May import: the core, ``zoo.inputs``, the catalog's cards and sources, ``zoo.spaces.align`` (a leaf) and
the embedding cache; never spaces in use, samples or the apps.
"""
