"""Running a pipeline on the host: the plan (DAG, parameters, selection) and the runner that
schedules it, one step's attempts, events and the one view model displays read, the run and
artifact stores and their health checks, step notebooks, process and crash recovery,
`latest/` and export."""
