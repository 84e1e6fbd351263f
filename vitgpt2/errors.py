"""Errors whose message is the whole story: bad data, bad arguments, a model that is not there. Commands print them as
one `error:` paragraph without a traceback (VITGPT2_TRACEBACK=1 brings it back); anything else keeps its traceback."""

import os
import sys
from collections.abc import Callable


class UserError(Exception):
    """An expected error: its message names what is wrong and how to fix it."""


class ArgumentError(UserError, ValueError):
    """A command-line or config-file argument that cannot be used."""


def report_user_errors(run: Callable[[], object], program: str) -> int:
    """Runs `run`; a `UserError` becomes `<program>: error: <message>` on stderr and exit status 2."""
    try:
        result = run()
    except UserError as error:
        if os.environ.get("VITGPT2_TRACEBACK"):
            raise
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
