"""`cityops bench`: how fast the hub is, measured against the raw Kafka ceiling of the same broker.

One run, one broker started for it (never a broker someone else runs), every service as its own
OS process, exactly as `cityops up` starts them. Phases (each prints a progress line):

1. broker + topics + services; a warm-up of tickets taken all the way to closed (proves every
   service is ready; the triage classifier trains or loads its cached model first);
2. ceiling: raw aiokafka produce, consume and produce+consume rates, and one raw hop's latency at
   the fixed offered load, with the records our events really are (the warm-up's own records, in
   the proportions the workflow produces them);
3. latency: intake -> assignment (TicketSubmitted put on cityops.intake.v1 with aiokafka, its
   TaskAssigned seen on cityops.act.v1) at a fixed offered load, p50/p95/p99; peak resident memory
   of the broker and of every service during that phase (VmHWM, reset before it);
4. the same under the NYC 311 sample's real arrival curve sped up N times
   (NYC Open Data, 311 Service Requests (erm2-nwe9));
5. pipeline: a burst of tickets fed at once, tickets closed per second and events per second
   across every topic while the pipeline is saturated;
6. HTTP intake: POST /tickets from concurrent clients, rate and p50/p99;
7. replay: every projection rebuilt from the log into a fresh SQLite database
   (services.projections.rebuild), in events per second; compared with the raw consume rate.

Simulated units answer at once (sign-for and work delay 0, no returns, extensions or
disagreements, residents satisfied), so a ticket's time is the hub's own time.

Every figure is printed in one table with its ratio to the raw-Kafka figure it is bounded by, and
written as JSON with the machine (cores, memory, load), the Kafka version and the commit. The
machine is shared: compare ratios within one run, not absolute numbers across runs.
Everything started here is stopped here (by recorded pid), failures and Ctrl-C included.

Modules: config (settings), measure (numbers, /proc), hub (the processes), workload (what is fed),
kafka_io (feeding and watching), one module per phase (ceiling, latency, pipeline, http_intake, replay),
profiling, report (table and JSON) and run (the order of the phases and the CLI); city and city_run: the city
dimension (`--cities demo,yantai`: each city's lookups, hub start, memory and burst side by side).
"""

from tools.bench.measure import latency_summary, percentile, ratio
from tools.bench.report import Result, build_table, format_table
from tools.bench.run import app, bench, run_bench

__all__ = ["Result", "app", "bench", "build_table", "format_table", "latency_summary", "percentile", "ratio", "run_bench"]
