"""The exception types the pipeline raises for problems a user can fix."""


class PipelineError(Exception):
    """A user-facing failure: bad input, unwritable output, unsupported option.

    The message is one sentence that names the file or option at fault; the CLI prints it
    as ``error: <message>`` without a traceback, with exit status 2 (a usage mistake).
    """


class RunFailedError(PipelineError):
    """The run started and failed on the way: the disk filled up, the encoder or every Ray
    worker failed, the input turned out to be damaged part-way.

    Printed like any :class:`PipelineError`, but with exit status 1 (failed work): the
    command line was right, and running it again may succeed once the cause is gone.
    """
