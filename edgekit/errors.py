"""One error tree: every failure a user can fix is an EdgekitError.

The CLI maps these to a one-line message and exit code 2; anything else is a
bug and keeps its traceback.
"""


class EdgekitError(Exception):
    """Base of all user-actionable errors. The message names problem and fix."""

    exit_code = 2


class InputError(EdgekitError):
    """A model, data file, option or path given by the user is unusable."""


class ModelLoadError(InputError):
    """A model spec could not be resolved or loaded."""


class DataError(InputError):
    """Data is missing, corrupt, or does not fit the model."""


class TargetError(InputError):
    """An unknown or invalid target description."""


class OutputExistsError(InputError):
    """The output directory exists and --force was not given."""


class StageError(EdgekitError):
    """A stage could not run on the artifact it was given."""


class BudgetExceededError(EdgekitError):
    """A fidelity or accuracy budget was exceeded."""


class MissingDependencyError(EdgekitError):
    """An optional backend is not installed."""

    def __init__(self, package: str, extra: str):
        super().__init__(
            f"{package} is not installed; install it with: pip install 'edgekit[{extra}]'"
        )


def describe_os_error(exc: OSError) -> str:
    """What a failed file operation means to a user, in a few words."""
    import errno

    names = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
             errno.EACCES: "permission denied", errno.EPERM: "permission denied",
             errno.ENOTDIR: "a part of the path is a file", errno.EEXIST: "a file is in the way",
             errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "a file grew past the size limit (file too large)"}
    return names.get(exc.errno, exc.strerror or str(exc))
