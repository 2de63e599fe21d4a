"""The one exception type for expected failures.

Anything a user can cause (a refused connection, a missing meta context,
a malformed sidecar, a size mismatch) raises BackupError with a one-line
message and, optionally, a hint.  The front-end prints it and exits 1;
only real bugs show a traceback.
"""


class BackupError(Exception):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        return self.message
