"""The project-managed Apache Kafka: fetched from Maven Central, run as plain JVM processes.

* install.py: settings (env CITYOPS_KAFKA_*), fetching the jars, the `java` to run them;
* properties.py: the files a node is configured with;
* probe.py: free ports, live pids, whether a broker answers;
* node.py: `LocalKafka`, one broker+controller node (start, wait until ready, stop by pid file);
* cluster.py: `LocalKafkaCluster`, n nodes with one controller quorum;
* cli.py: `cityops kafka ...`.
"""

from tools.kafka.cluster import LocalKafkaCluster
from tools.kafka.install import (
    KafkaLocalError,
    KafkaLocalSettings,
    fetch_kafka,
    java_executable,
)
from tools.kafka.node import LocalKafka
from tools.kafka.probe import (
    NodeStatus,
    broker_ids_seen_by,
    find_free_ports,
    free_listen_port,
    new_cluster_id,
    port_is_free,
)

__all__ = [
    "KafkaLocalError",
    "KafkaLocalSettings",
    "LocalKafka",
    "LocalKafkaCluster",
    "NodeStatus",
    "broker_ids_seen_by",
    "fetch_kafka",
    "find_free_ports",
    "free_listen_port",
    "java_executable",
    "new_cluster_id",
    "port_is_free",
]
