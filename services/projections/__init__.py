"""Projections (read models) of the event log, and the supervisor's replay tools.

The log is the truth. Every read model here (tickets, tasks and unit queues, each ticket's timeline,
per-ticket metric contributions) is a pure function of the *set* of events of each ticket
(`domain.fold`), so the live consumer (`app`), a rebuild from offset zero (`rebuild`), and an as-of
replay (`replay`) all compute the same rows, whatever order the topics interleave in.

Modules: `settings`, `models` (tables), `domain` (the pure fold, summaries, rankings), `store`
(writing folds, exactly-once apply), `migrations/` + `migrate` (Alembic), `logsource` (reading the
log from Kafka or the archive), `rebuild` (rebuild + checksum), `replay` (story, events, as-of),
`whatif` (re-triage into a scratch store), `api` (FastAPI router), `replay_cli` (`cityops replay`),
`app` (the live consumer service).
"""
