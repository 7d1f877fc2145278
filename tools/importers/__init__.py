"""Importers: real 311 exports (and any CSV with a column mapping) as intake events, with their original times.

`cityops import nyc|baltimore|csv` turns each row into a `TicketSubmitted` on cityops.intake.v1
(channel `import`, submitted at the row's creation time, which is also the event time and the
record timestamp, so time-based replays and seeks work on loaded history). Ticket ids and event
ids derive from the source and the row's id, so importing the same file twice is a redelivery that
every consumer drops, not a second copy of the city's history.

Data attribution (keep it wherever the data is shipped):
- NYC: "NYC Open Data, 311 Service Requests (erm2-nwe9)", see data/nyc311/PROVENANCE.md.
- Baltimore: "City of Baltimore, Open Baltimore 311 (311 Customer Service Requests)", see
  data/baltimore311/PROVENANCE.md.

`synthetic` (in `synthetic.py`) generates whole workflow histories for demos and benchmarks.
"""
