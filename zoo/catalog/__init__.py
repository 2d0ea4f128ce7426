"""The catalog: model cards and everything that feeds the registry, up to a loaded model.

- ``modelcard`` (the ``ModelCard`` type and its TOML form), ``modelcard_md`` (a card as a README),
  ``card_sources`` and ``examples`` (a card's sources and published examples);
- ``registry`` (the name -> card table: built-in cards in ``zoo/cards``, user cards, plugins);
- ``sources`` and ``hubfiles`` (where a card's files are, their pins and integrity, downloads);
- ``adhoc`` (cards made on the fly for ``open_clip:``, ``timm:``, ``hf-hub:``, ``local-dir:`` names);
- ``loader`` (``zoo.load``: card -> files -> adapter instance), ``verify`` (a card's published examples).

May import: the core (``zoo.errors``, ``zoo.embeddings``), ``zoo.inputs`` and, to build models,
``zoo.adapters``; never spaces, data or the apps.
"""
