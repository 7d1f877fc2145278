"""The bench splits the broker's CPU by kind of JVM thread (tools/bench/measure.py), so that the JIT's warm-up is
not read as what the broker costs per record in steady state; and the local broker's collector flags and
properties can be changed for such an experiment (tools/kafka: CITYOPS_KAFKA_JVM_FLAGS, CITYOPS_KAFKA_PROPERTIES)."""

from __future__ import annotations

import os
import shlex
import threading

from tools import bench
from tools.bench.budget import broker_threads, cpu_budget, describe
from tools.bench.measure import JvmThreadWatch, jvm_thread_kind, thread_cpu_by_kind
from tools.kafka import KafkaLocalSettings, LocalKafka

from .test_bench import _with_budget


def test_hotspot_and_kafka_thread_names_are_sorted_into_kinds():
    # The names as /proc shows them: HotSpot's and Kafka's thread names cut to 15 characters.
    assert jvm_thread_kind("C2 CompilerThre") == "jit compiler"
    assert jvm_thread_kind("C1 CompilerThre") == "jit compiler"
    assert jvm_thread_kind("GC Thread#1") == "garbage collector"
    assert jvm_thread_kind("G1 Conc#0") == "garbage collector"
    assert jvm_thread_kind("data-plane-kafk") == "requests (network and handler threads)"
    assert jvm_thread_kind("group-coordinat") == "group coordinator"
    assert jvm_thread_kind("kafka-1-raft-io") == "other"


def test_a_process_threads_cpu_is_read_from_proc_and_a_gone_process_reads_as_nothing():
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        with JvmThreadWatch(os.getpid()) as watch:
            deadline = os.times().elapsed + 0.3
            while os.times().elapsed < deadline:
                sum(range(1000))
    finally:
        stop.set()
        worker.join()
    assert set(watch.used) == {"other"}  # a Python process has no JIT or collector threads of those names
    assert watch.used["other"] > 0.1  # two busy threads for 0.3 s
    assert thread_cpu_by_kind(2 ** 22 + 12345) == {}  # above pid_max's ceiling: no such process
    with JvmThreadWatch(None) as nothing:
        pass
    assert nothing.used == {}


def test_the_brokers_share_per_ticket_is_split_by_thread_kind_in_the_log_and_the_table():
    split = broker_threads({"jit compiler": 1.5, "requests (network and handler threads)": 3.0, "other": 0.5}, tickets=500)
    assert list(split.items()) == [("requests (network and handler threads)", 6.0), ("jit compiler", 3.0), ("other", 1.0)]
    assert broker_threads({"jit compiler": 1.0}, tickets=0) == {}
    b = cpu_budget({"kafka-broker": 5.0, "act": 5.0}, {"act": 0.0}, {"act": 5000.0}, tickets=500, events=5000, cores=2)
    b["broker_threads"] = split
    assert "jit compiler 3.0 ms" in describe(b)
    rows = {r["figure"]: r["value"] for r in bench.build_table(_with_budget(b))}
    assert rows["      of which the JVM's jit compiler"] == 3.0
    assert rows["    kafka-broker: CPU per ticket"] == 10.0


def test_the_local_brokers_collector_flags_and_properties_come_from_its_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYOPS_KAFKA_JVM_FLAGS", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1")
    monkeypatch.setenv("CITYOPS_KAFKA_PROPERTIES", '{"num.io.threads": 2, "num.partitions": 6}')
    settings = KafkaLocalSettings(state_dir=tmp_path)
    assert shlex.split(settings.jvm_flags) == ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
    node = LocalKafka(settings, port=19992, extra_properties={"num.partitions": 9})
    properties = node.server_properties()
    assert properties["num.io.threads"] == 2
    assert properties["num.partitions"] == 9  # a caller's own properties win over the settings'
    assert KafkaLocalSettings(state_dir=tmp_path).properties == {"num.io.threads": 2, "num.partitions": 6}
    monkeypatch.delenv("CITYOPS_KAFKA_JVM_FLAGS")
    assert "-XX:+UseG1GC" in KafkaLocalSettings(state_dir=tmp_path).jvm_flags  # the default collector is Kafka's own


def test_the_jit_warm_up_stops_once_the_compilers_share_of_a_burst_is_small_and_counts_what_cannot_be_seen_as_warm():
    from tools.bench.jit_warmup import jit_share, settled

    assert jit_share({"jit compiler": 3.0, "requests (network and handler threads)": 6.0, "other": 1.0}) == 0.3
    assert jit_share({}) is None  # no broker pid, or not Linux: nothing measured
    assert not settled(0.3, 0.1) and settled(0.08, 0.1)
    assert settled(None, 0.1)  # never loop on what cannot be measured


def test_the_table_says_how_warm_the_broker_was_before_the_measured_phases():
    from .test_bench import _result

    res = _result()
    res.phases["jit_warmup"] = {"rounds": [{"jit_share": 0.31}, {"jit_share": 0.07}], "jit_cpu_seconds": 9.5,
                                "settled": True, "settled_share": 0.1}
    rows = [r for r in bench.build_table(res) if r["figure"].startswith("broker JIT warm-up")]
    assert len(rows) == 1 and rows[0]["value"] == 0.07 and rows[0]["met"] is None  # a state of the run, not a target
    assert "2 bursts" in rows[0]["figure"] and "9.5 s" in rows[0]["reference"]
