"""Where people meet a run: the notebook magics and run handle, the live DAG widget and its
layout, the CLI, its progress display, listings and configuration."""
