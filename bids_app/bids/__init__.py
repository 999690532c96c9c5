"""BIDS queries (pybids), typed records and derivatives writing. No nipype here."""
