"""Job modules and a harness for the tests that run the `pyjobqueue` command."""
