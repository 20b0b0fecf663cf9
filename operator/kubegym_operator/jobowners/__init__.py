"""The kinds that own a Job, as adapters of :func:`kubegym_operator.reconciler.reconcile`.

Each module holds one kind's answers (:class:`~kubegym_operator.reconciler.JobOwner`): its Job's
name and rendering, how a live Job follows an edit, its status, what depends on the clock. What a
kind does besides (a Benchmark waiting for the TrainingRuns it evaluates) stays in its module.
"""
