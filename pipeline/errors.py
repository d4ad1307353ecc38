"""The one exception type the pipeline raises for problems a user can fix."""


class PipelineError(Exception):
    """A user-facing failure: bad input, unwritable output, unsupported option.

    The message is one sentence that names the file or option at fault; the CLI prints it
    as ``error: <message>`` without a traceback.
    """
