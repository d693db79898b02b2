"""Argument types shared by the command lines (runner, train.py, benchmark.py).

Each turns bad text into an `argparse.ArgumentTypeError`, which argparse reports with the
flag's name and exit status 2.
"""
import argparse


def positive_int(text):
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text):
    """An integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def int_list(text):
    """Positive integers separated by commas: "1,2,4"."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, "
                                         f"got {text!r}")
    return values


def image_shape(text):
    """Channels, height, width: "3,224,224" -> (3, 224, 224)."""
    try:
        values = int_list(text)
    except argparse.ArgumentTypeError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224, got {text!r}")
    return tuple(values)
