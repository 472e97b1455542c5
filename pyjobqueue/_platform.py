"""The one platform seam: are we running under Pyodide (WebAssembly)?"""

from __future__ import annotations

import sys

IN_PYODIDE = sys.platform == "emscripten" or "pyodide" in sys.modules
