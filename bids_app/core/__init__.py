"""Pure numpy/dipy/nibabel/antspyx functions, testable without nipype."""
