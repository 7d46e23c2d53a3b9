"""The sync engine: one package, around one object that owns one run.

- `run.SyncRun`: one run of one task (claim, preconditions, scope, results, jobs, finish).
- `jobs.RegistryRun`: one registry within a run (its client, cap and queue) and the sync of
  one repository; `jobs.Job` / `jobs.Outcome`: one repository and what happened to it.
- `pool.WorkerPool`: the worker threads; `pool.db_guard`: their database work on SQLite.
- `known.KnownDigests`: what a run already knows about each digest of a registry.
- `watchdog.watchdog`: interrupts silent tasks, re-enqueues lost queued ones.
- `scheduled.scheduled_sync`: the daily sync of every project.

Requesting, cancelling and retrying a task, reconciling a repository and every task state
transition are model methods (`SyncTask.objects.request`, `SyncTask.cancel`,
`Repository.reconcile`, ...). Nothing here knows about the console's HTTP requests or the
queue: `imagesync/tasks.py` is the only module django-q2 calls.
"""
