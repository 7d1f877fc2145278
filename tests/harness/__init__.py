"""Test harnesses: run services' real pipelines without Kafka (see `pipeline`) and drive tickets through them (see `workflow`)."""
