"""``python -m controlplane.cli``: the same as the ``fusebox`` console script."""

from controlplane.cli import main

raise SystemExit(main())
