"""``python -m fusion_spec`` is the ``fusion-spec`` command line."""

from .cli import main

raise SystemExit(main())
