"""Everything that is not a service: the local Kafka launcher, the process supervisor, the hub
(`cityops up`), the benchmark, the importers and the top-level `cityops` command.

Tools may import services (to run or measure them); services never import tools
(tests/unit/test_boundaries.py).
"""
