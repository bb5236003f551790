"""argparse types shared by the command-line verbs: a bad value is argparse's one-line usage error."""

import argparse


def _checked(convert, accept, what):
    """An argparse type: ``convert(text)``, refused unless ``accept(value)``, ``what`` naming the rule."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


#: An integer of at least 1.
positive_int = _checked(int, lambda value: value >= 1, "a positive integer")
#: A number above 0.
positive_float = _checked(float, lambda value: value > 0, "a positive number")
#: A number of at least 0.
non_negative_float = _checked(float, lambda value: value >= 0, "a number of 0 or more")


def note_span(text):
    """``--eval_seconds``: a positive number of seconds, ``whole`` (None: whole notes) or ``model`` (the model's own).

    Example
    -------
    >>> note_span("2.5"), note_span("whole"), note_span("model")
    (2.5, None, 'model')
    """
    if text in ("whole", "model"):
        return None if text == "whole" else text
    return _checked(float, lambda value: value > 0, "a positive number of seconds, 'whole' or 'model'")(text)
