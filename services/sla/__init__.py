"""The SLA service (时限): durable timers per assignment, reminders (催办), escalation (督办) up the ladder, the
ledger of whose clock was running, the ping-pong (退单) detector and the returns index.

- `services.sla.app.create_app` builds the consumer + timer sweep (`cityops service run sla`);
- `domain.holders.ledger_for(events)`, `bounds_for(events)` and `check_tiles(spans, start, end)` are the
  ledger's pure API (for the end-to-end check);
- `services.sla.cli.app` is `cityops sla` (ledger, rates, returns-index, rebuild, calibrate).
"""
