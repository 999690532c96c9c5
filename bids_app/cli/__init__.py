"""Command line: parser, settings construction, exit codes, run driver."""
