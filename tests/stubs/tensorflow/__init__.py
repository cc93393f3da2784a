"""A stand-in for tensorflow, for hearvalidator 2021.0.6 only.

The validator imports tensorflow at module top, but for a torch model it only asks
``isinstance(model, tf.Module)`` (and ``tf.device`` for tf models). Installing
tensorflow (hundreds of MB, its own numpy pins) for that is not worth it."""

import contextlib


class Module:
    """Nothing is a tf.Module here: the validator then takes the torch path."""


@contextlib.contextmanager
def device(name):
    yield
