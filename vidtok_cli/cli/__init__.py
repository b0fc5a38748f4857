"""The ``vidtok`` command line. Thin: parse options, call one library function, print with rich.

One module per command; heavy imports (torch, av, numpy, the library modules using them) happen
inside the commands, so that ``vidtok --help`` answers at once.
"""

from .app import app, load_commands, main

load_commands()

__all__ = ["app", "main"]
