"""``python -m kubegym_cli`` is ``kubectl gym``."""

from kubegym_cli.main import main

raise SystemExit(main())
