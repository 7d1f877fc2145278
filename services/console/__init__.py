"""The console: the hub's web pages for hotline operators, units and grid workers, supervisors and auditors.

Server-rendered (FastAPI + Jinja2 + htmx, Apache ECharts for charts), Chinese by default with an English switch,
live through one server-sent-events feed. It is a client like any other: it reads and acts through the hub's HTTP
APIs (intake, the unit bridge, the replay API) with the signed-in user's own token, and follows the lifecycle topics
for live updates; it owns no store and never opens another service's database.
"""
