"""``arrears-router bench`` (placeholder until the benchmark lands)."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run_bench"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run_bench(args: argparse.Namespace) -> None:
    raise SystemExit("bench: not written yet")
