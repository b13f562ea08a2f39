"""The one error type the CLI turns into a one-line message and exit code 2."""


class InputError(Exception):
    """Bad input from the user (a spec, a data file, an argument).

    The message is complete on its own, one line, and names the file and the field,
    e.g. ``experiments/x.yaml: training.epochs: must be an integer >= 1``.
    Raised before anything is written.
    """

    exit_code = 2


def shown(value) -> str:
    """A value as an error message shows it: its repr, on one line, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def field_name(key) -> str:
    """A mapping key as a field name in a message (non-text or odd keys as a short repr)."""
    return key if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 60 else shown(key)
