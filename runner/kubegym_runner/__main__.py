"""``python -m kubegym_runner`` is ``kubegym-runner``."""

import sys

from kubegym_runner.cli import main

sys.exit(main())
