"""``python -m fusebox.controlplane.cli``: the same as the ``fusebox`` console script."""

from fusebox.controlplane.cli import main

raise SystemExit(main())
