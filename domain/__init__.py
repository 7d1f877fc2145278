"""The city's domain rules that more than one service applies, each defined once.

* `catalogue`: the responsibility catalogue (who handles what, where, by when) and its routing rule;
* `calendar`: China's working-day calendar and the deadline arithmetic on it;
* `statuses`: the ticket-status and task-state vocabulary;
* `rates`: the three rates a unit is judged on (response, resolution, satisfaction);
* `holders`: who held a ticket when (the ledger that sla and the projections both show).
* `reports`: who may report on a task or give an opinion (act, consult, sla, evaluate and the projections
  all refuse a report from another unit by it).

Pure: no I/O beyond reading the packaged YAML data, nothing at import time. `domain` imports only
`contracts` (the wire format), the standard library and third-party packages; services import it.
"""
