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


def positive_float_list(text):
    """Positive numbers separated by commas: "0.5,1,2"."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers separated by commas, "
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


def percentage(text):
    """A number from 0 to 100."""
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage from 0 to 100, got {text}")
    return value


def fraction(text):
    """A number from 0 to 1 (COCO mAP as NVIDIA's recipes give it: 0.377 for AP 37.7)."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to 1 (COCO mAP as "
                                         f"NVIDIA's recipes give it: 0.377 for AP 37.7), "
                                         f"got {text}")
    return value
