"""Data at scale: the embedding cache, the vector store and dataset jobs.

- ``cache``: an on-disk cache of vectors by content (SQLite, checked rows), which ``embed(cache=...)`` uses;
- ``store``: LanceDB collections of one space each, with exact, ANN, quantized and filtered search;
- ``scale``: ``embed_dataset``, Parquet in and out, on Ray Data, resumable shard by shard.

May import: everything below (core, inputs, catalog, adapters, spaces); never samples or apps.
"""
