"""Offline templates and atlases: manifest, checksummed sources, builders and the public API.

The workflows use :mod:`bids_app.atlases.api` (``get_template``, ``get_atlas``, ``citations``,
``licenses``); ``alsmri fetch-data`` (:mod:`bids_app.cli.fetch_data`) builds the data directory.
"""
