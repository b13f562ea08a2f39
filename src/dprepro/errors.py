"""The error types the CLI turns into a one-line message: bad input (exit code 2) and a run that did
not do what its spec and its epsilon say (exit code 1)."""


class InputError(Exception):
    """Bad input from the user (a spec, a data file, an argument).

    The message is complete on its own, one line, and names the file and the field,
    e.g. ``experiments/x.yaml: training.epochs: must be an integer >= 1``.
    Raised before anything is written.
    """

    exit_code = 2


class RunCheckFailed(Exception):
    """A run did not do what its spec says, so the spec's epsilon would not count what ran (e.g. the
    optimizer applied another number of steps than the accountant counts).

    The message is one line naming the seed and what differs. Raised before that seed's record
    (seed.json, model) is written, so the seed is never taken for finished.
    """

    exit_code = 1


def shown(value) -> str:
    """A value as an error message shows it: its repr, on one line, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def field_name(key) -> str:
    """A mapping key as a field name in a message (non-text or odd keys as a short repr)."""
    return key if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 60 else shown(key)
