"""Running a pipeline on the host: the runner and its events, the run store and its health
checks, the artifact store, step notebooks, crash recovery, `latest/` and export."""
