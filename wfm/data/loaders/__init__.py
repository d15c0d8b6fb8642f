"""Loaders of measured data into wfm datasets (the shard format of :mod:`wfm.data.shards`).

One module per source format; each exposes ``load_*`` (arrays in memory) and
``import_*`` (a dataset folder). ``wfm data import <format>`` (``wfm.data.import_cli``)
is the command-line path. Shared pieces: :mod:`.timegrid` (timestamps to a regular grid,
gap policy) and :mod:`.common` (CSV parsing, writing a dataset).
"""
