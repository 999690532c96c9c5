"""Thin nipype interfaces around the pure functions of :mod:`bids_app.core`."""
