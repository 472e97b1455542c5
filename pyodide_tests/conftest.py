"""Host-side pytest settings for pyodide_tests/."""

# pyodide_tests/inside/ runs inside Pyodide only (the runner ships it there).
collect_ignore = ["inside"]
