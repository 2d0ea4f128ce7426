"""Adapters: one class per model family, each turning a card and its files into ``embed(inputs,
task_instruction)``. ``base`` holds what every adapter shares (batching, the call lock, normalization,
truncation, quantization, the cache hook); ``lora`` merges LoRA/DoRA adapters into the vision-language
backbones; ``imagenet`` is the label set of the image classifiers.

May import: the core, ``zoo.inputs``, the catalog's cards and sources, ``zoo.spaces.align`` (a leaf) and
the embedding cache; never spaces in use, samples or the apps.
"""
