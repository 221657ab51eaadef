"""The `percept` command line: parses arguments, builds options, calls the library."""
