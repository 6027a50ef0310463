"""The `olane` commands that work on recordings, history and saved calls, as plain
functions (the click wrappers in the CLI only parse arguments and call these)."""
