"""The exception folder jobs raise for problems a user can fix (bad folders, no videos)."""


class JobError(Exception):
    """A user-facing failure of a whole job; the CLI prints it as ``error: <message>``.

    Failures of single videos or sources are not raised: they are reported per item and the
    rest of the job goes on.
    """
