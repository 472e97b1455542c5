"""The `pyjobqueue` command line (CPython only): run workers, submit and inspect jobs.

Nothing in the library imports this package, so `import pyjobqueue` stays free of the
command line's dependencies (rich), which are imported only when output is a terminal.
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
