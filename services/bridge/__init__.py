"""The unit HTTP bridge: units that do not write Python list their tasks and report over HTTP."""
