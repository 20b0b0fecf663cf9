"""Exit codes of the runner, and what the operator's Job does with each.

A user error (bad config, unknown env) is never fixed by retrying, an infrastructure error may
be: the runner exits with one of these codes and the Job's ``podFailurePolicy``, rendered by the
operator from the same constants, fails the Job at once on a user error and retries the rest.
"""

#: Exit code for errors that retrying cannot fix (bad config, unknown env, ...).
#: The Job's podFailurePolicy fails the Job at once on it.
EXIT_USER_ERROR = 42
#: Exit code for errors of the infrastructure (storage unreachable, API errors):
#: counted against backoffLimit and retried.
EXIT_INFRA_ERROR = 43
#: Exit code for storage that cannot be reached (S3 endpoint down, DNS, timeouts): an
#: infrastructure error (counted against backoffLimit and retried) that the operator reports
#: with reason StorageUnreachable, so the user looks at the endpoint and not at the code.
EXIT_STORAGE_ERROR = 44
