"""User-facing errors: one line naming the cause and the fix, exit code 2 in the CLI."""


class PipelineError(Exception):
    """Bad input or a state the user must fix; the CLI prints it as one line, no traceback."""


class ValidationFailed(PipelineError):
    """A dataset does not match the schema, the registry or its manifest."""
