"""Group level (``alsmri BIDS_DIR OUTPUT_DIR group``): analyses, no writing.

Entry point: :func:`bids_app.group.run.run_group`, which returns a typed
:class:`~bids_app.group.run.GroupResults`. Modules: ``spec`` (analysis spec + alias table),
``load`` (participant metrics tables), ``phenotype`` (phenotype files, join, inclusion),
``values`` (per-value typing of phenotype columns), ``table1`` (Table 1), ``zscores``
(patient z-scores against controls), ``design`` (column typing, design
matrices), ``stats`` / ``relations`` (statistics), ``columns`` (descriptions of the output
columns), ``notes`` (warnings of a run). The tables, figures and report are written by
:mod:`bids_app.reports.group`.
"""
