"""nipype workflow factories (``init_*_wf``)."""
