"""Triage (分类分流): classify a ticket's text against the responsibility catalogue and route it.

The pure classifier is `domain.classifier` (intake's suggestions use it too), `services.triage.nyc311` the NYC 311 importer used for
demos and accuracy measurements, `services.triage.cli` the `cityops triage` commands. Nothing here imports
scikit-learn or connects anywhere at import time.
"""
