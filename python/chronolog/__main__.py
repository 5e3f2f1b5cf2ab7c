"""``python -m chronolog`` is the ``chronolog`` command."""

from chronolog.cli import main

raise SystemExit(main())
