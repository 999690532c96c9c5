"""Group level (``alsmri BIDS_DIR OUTPUT_DIR group``).

Entry point: :func:`bids_app.group.run.run_group`. Modules: ``spec`` (analysis spec + alias
table), ``load`` (participant metrics tables, phenotype join), ``design`` (column typing, design
matrices), ``stats`` / ``relations`` (statistics), ``figures``, ``report`` (TSV/JSON/HTML
writers), ``synthetic`` (simulated cohorts for tests and benchmarks).
"""
