"""``kubectl gym``: kubegym's kubectl plugin (reports and uploads)."""
