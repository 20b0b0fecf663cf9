"""The kubegym runner: the program inside the runner image (``kubegym-runner train``).

Only :mod:`kubegym_runner.config` is light; every other module imports the RL stack.
"""
