"""The error tree of kubectl-kdoctor and the exit code each one ends a command with.

::

    KdoctorError              exit 3 unless a subclass says otherwise
    ├── InputError            exit 2: bad flag, value, file or combination; nothing was created
    ├── ExpectationFailed     exit 1: the run happened, some expectation was not met
    ├── ClusterError          exit 3: cluster unreachable, API error, controller error
    │   ├── Forbidden         exit 3: permission denied (names what is missing)
    │   ├── NotFound
    │   └── Conflict
    ├── AgentStartError       exit 3: agents not scheduled/started/ready in time, with the reason
    └── Interrupted           exit 130: Ctrl-C; what the run created has been removed

Nothing below ``cli`` prints or exits: it raises one of these and the CLI turns it into a
message on stderr and the exit code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_EXPECTATION = 1
EXIT_USAGE = 2
EXIT_CANNOT_RUN = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (``| head``)


class KdoctorError(Exception):
    """Base of every error the plugin raises on purpose."""

    exit_code = EXIT_CANNOT_RUN


class InputError(KdoctorError):
    """Bad input: the message names the flag (or file) and what is expected."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, flag: str | None = None) -> None:
        self.flag = flag
        super().__init__(f"{flag}: {message}" if flag else message)


class ExpectationFailed(KdoctorError):
    exit_code = EXIT_EXPECTATION


class ClusterError(KdoctorError):
    exit_code = EXIT_CANNOT_RUN

    def __init__(self, message: str, status: int | None = None, reason: str | None = None):
        self.status = status
        self.reason = reason
        super().__init__(message)


class Forbidden(ClusterError):
    pass


class NotFound(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class AgentStartError(KdoctorError):
    exit_code = EXIT_CANNOT_RUN


class Interrupted(KdoctorError):
    exit_code = EXIT_INTERRUPTED
