"""Manifests and specs shipped as data (atlas manifest, analysis spec, aliases)."""
