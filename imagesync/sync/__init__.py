"""The sync engine: one package, around one object that owns one run.

- `run.SyncRun`: one run of one task (claim, preconditions, plan, take part, statistics);
  `run.join_job`: another worker process joining a running task through one of its jobs.
- `plan`: a claimed task's first jobs (a listing per registry, or batches of the chosen
  repositories) and the result rows of what failed before any sync.
- `work.Participation`: one process's part in a running task -- claims jobs, hands their
  repositories to its threads within each registry's cap, beats, honours cancel, re-queues a
  silent worker's job, and concludes the task when every job is done.
- `jobs.RegistryRun`: a registry within a process (its client and cap) and the sync of one
  repository; `jobs.Job` / `jobs.Outcome`: one repository and what happened to it.
- `limits`: per-registry concurrency and requests-per-second across processes.
- `pool.WorkerPool`: the worker threads; `pool.db_guard`: their database work on SQLite.
- `known.KnownDigests`: what a run already knows about each digest of a registry.
- `watchdog.watchdog`: interrupts silent tasks, re-queues lost tasks and jobs.
- `scheduled.scheduled_sync`: the daily sync of every project.

Requesting, cancelling and retrying a task, reconciling a repository and every task state
transition are model methods (`SyncTask.objects.request`, `SyncTask.cancel`,
`Repository.reconcile`, ...). Nothing here knows about the console's HTTP requests, and the
queue is reached only through callables from `imagesync/tasks.py`, the only module django-q2
calls.
"""
