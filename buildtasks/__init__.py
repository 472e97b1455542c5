"""The tasks behind ``build.py``: provisioning, services, the Pyodide bundle and the checks.

Standard library only, so that ``python build.py`` runs before any virtualenv exists;
the browser suites import the shared pieces (``webserver``, ``chromium``) from here too.
"""
