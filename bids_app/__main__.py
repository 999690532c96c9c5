"""Allow ``python -m bids_app``."""

from bids_app.cli.run import main

raise SystemExit(main())
