"""The one exception a run stops with. Library code raises `RunError` with one line that says what is
wrong and, where there is one, the fix; only the command line (`trainer.cli`) turns it into an exit."""


class RunError(Exception):
    """A run that cannot start or go on: `str(e)` is the one line the user sees."""
