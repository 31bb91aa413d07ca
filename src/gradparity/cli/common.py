"""What every command shares: how a usage or input error is reported."""

from __future__ import annotations

import sys

USAGE_ERROR = 2
"""The exit code of a usage or input error, for every command."""


def usage_error(command: str, message: str) -> int:
    """Print ``gradparity <command>: <message>`` to stderr; return the usage exit code."""
    print(f"gradparity {command}: {message}", file=sys.stderr)
    return USAGE_ERROR
