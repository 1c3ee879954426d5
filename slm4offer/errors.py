"""The project's user errors: what a person gave (a setting, a file, an endpoint) is not usable.

The CLI prints these as one line and exits 2; anything else is a bug and keeps its traceback.
Each also derives from the built-in exception it used to be, so `except ValueError` still works.
"""


class UserError(Exception):
    """Something the user gave cannot be used; the message says what and how to fix it."""


class InvalidValue(UserError, ValueError):
    """A setting or an input value is out of range, inconsistent or malformed."""


class UnknownKey(UserError, KeyError):
    """A key (a config field, a column) that the project does not know."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class WrongType(UserError, TypeError):
    """A setting of the wrong type."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named does not exist or is not what it should be."""


class CannotRun(UserError, RuntimeError):
    """The run cannot go on for a reason outside the code: an endpoint, git, too few draws."""
