"""User-facing errors: one sentence that names the file or field and the fix."""


class UserError(Exception):
    """A mistake the user can fix (missing file, wrong shape, NaN in data, bad config key).

    The CLI prints the message as one line and exits with status 1, never a traceback.
    """
