"""`python -m pyjobqueue`: the same as the `pyjobqueue` command."""

from .cli import main

raise SystemExit(main())
