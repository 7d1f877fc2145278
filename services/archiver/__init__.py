"""The archiver: a durable copy of every record of every cityops topic, in the store.

Topics keep their events for ever (retention.ms=-1), but a broker can be lost or replaced; the
archive keeps each record's raw bytes, headers, topic, partition, offset and timestamp, so a
supervisor can replay a year (`cityops replay ... --from-archive`) from the database alone.
Idempotent on (topic, partition, offset): a redelivered batch adds nothing.
"""
