"""The project's own errors; AWS modules translate botocore errors into these."""


class SightfleetError(Exception):
    """Base class of every error the project raises on purpose."""


class NotFound(SightfleetError):
    """The object, item or resource does not exist."""


class NoSuchResult(NotFound):
    """No result has this id (unlike a NotFound for a missing table, which means out of reach)."""


class NoSuchObject(NotFound):
    """No object has this key in a bucket that exists (unlike a missing bucket, which is out of reach)."""


class Unavailable(SightfleetError):
    """A backing service cannot be reached or refused the call; try again later."""


class ConditionFailed(SightfleetError):
    """A conditional write lost: somebody else already wrote that item."""


class InvalidJob(SightfleetError):
    """A queue message is not a job this version understands."""


class Invalid(SightfleetError):
    """The request can never succeed as made (a ValidationException, an item over a size limit): do not retry."""
