"""Anatomical branch: pure antspyx/nibabel functions (no nipype).

Modules: :mod:`.io` (loading, checks, reorientation), :mod:`.preproc` (N4, brain mask),
:mod:`.registration` (MNI152NLin6Asym affine + SyN), :mod:`.segmentation` (Atropos),
:mod:`.volumes` (GM volumes per atlas region, TIV), :mod:`.qc` (QC numbers and figures).
"""
