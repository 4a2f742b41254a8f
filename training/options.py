"""A command's options as one frozen object, built once from its parsed arguments.

`python -m training.train` (and `training.soup`) parse their flags with argparse, then hand
every helper this object, never the argparse Namespace: frozen, so no helper changes what
another reads, with a field per flag (its `dest`) and `argv`, the command line as given, which
the model card records. The fields come from the parser, so a new flag is a new field.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def options_class(name: str, parser: argparse.ArgumentParser) -> type:
    """A frozen dataclass with a field per option of `parser`, and `argv`."""
    dests = [a.dest for a in parser._actions if a.dest != argparse.SUPPRESS and a.dest != "help"]
    return dataclasses.make_dataclass(name, [(d, Any) for d in dests] + [("argv", tuple)],
                                      frozen=True)


def parse(cls: type, parser: argparse.ArgumentParser, argv: list[str]):
    """`argv` parsed by `parser` (argparse's errors and --help exit as usual), as a `cls`."""
    return cls(**vars(parser.parse_args(argv)), argv=tuple(argv))
