"""The one error type the CLI turns into a one-line message and exit code 2."""


class InputError(Exception):
    """Bad input from the user (a spec, a data file, an argument).

    The message is complete on its own, one line, and names the file and the field,
    e.g. ``experiments/x.yaml: training.epochs: must be an integer >= 1``.
    Raised before anything is written.
    """

    exit_code = 2
