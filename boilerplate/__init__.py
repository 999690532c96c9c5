"""Methods-text templates and references (installed as ``bids_app.boilerplate``)."""
