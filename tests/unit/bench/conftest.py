"""The bench scripts run as ``python bench/<script>.py``, so ``bench/`` is their first import path;
the tests load them by path and give them the same."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[3] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
