"""Spaces: comparing and joining embedding spaces.

- ``align``: the geometry, numpy only (anchor sets, relative representations, stitches and their files,
  CKA / mutual-kNN / retrieval metrics); it imports nothing else of the zoo but ``zoo.errors``;
- ``stitching``: registered stitches between models' spaces (fitting them on anchors embedded by the models);
- ``compat``: compatibility matrices between models.

May import: everything below (core, inputs, catalog, adapters); never data, samples or apps.
"""
