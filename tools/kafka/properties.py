"""The files a node is configured with: server.properties and the log4j2 configuration of the broker
and of the storage tool."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_properties(path: Path, properties: Mapping[str, Any]) -> None:
    body = "".join(f"{key}={value}\n" for key, value in properties.items())
    path.write_text("# Written by tools/kafka/properties.py; rewritten on every start.\n" + body)


def read_properties(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result


def log4j2_properties(log_dir: Path) -> str:
    # The broker must never write to our stdout: pytest and the CLI own it. A size-capped rolling
    # file keeps a long-running dev broker from filling the disk. Log4j's own shutdown hook would
    # close the log while Kafka's hook is still logging its controlled shutdown, so it is off.
    return f"""\
status = warn
name = cityops-kafka
shutdownHook = disable
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = {log_dir}/server.log
appender.server.filePattern = {log_dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""


# StorageTool would otherwise dump its whole configuration at INFO; warnings and errors go to
# its stderr, which we capture and show if formatting fails.
TOOL_LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = console
"""
