"""``python -m sessiond``: the same entry point as the ``sessiond`` console script."""

from __future__ import annotations

from sessiond.cli import main

raise SystemExit(main())
