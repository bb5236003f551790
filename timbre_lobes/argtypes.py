"""argparse types shared by the command-line verbs: a bad value is argparse's one-line usage error."""

import argparse
import math


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


def note_span(text, allow_model=True):
    """``--eval_seconds``: a positive number of seconds, ``whole`` (None: whole notes) or ``model`` (the model's own).

    Example
    -------
    >>> note_span("2.5"), note_span("whole"), note_span("model")
    (2.5, None, 'model')
    """
    if text == "whole" or (allow_model and text == "model"):
        return None if text == "whole" else text
    what = "a positive number of seconds or 'whole'"
    if allow_model:
        what = "a positive number of seconds, 'whole' or 'model'"
    return _checked(float, lambda value: math.isfinite(value) and value > 0, what)(text)


def span_seconds(text):
    """A span to evaluate: a positive number of seconds or ``whole`` (None).

    Example
    -------
    >>> span_seconds("1.5"), span_seconds("whole")
    (1.5, None)
    """
    return note_span(text, allow_model=False)
