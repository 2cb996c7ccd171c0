"""The one Faust application of the identity worker: topics, tables and agents.

Tables are changelog-backed (recovered from Kafka on start) and partitioned like their
source topics: ``id-state`` and ``group-state`` by id on the identity-commands topic, the
identity graph on the single-partition identity-graph topic (merges are sequenced there).
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from feedhouse.settings import Settings
from feedhouse.streams.dead_letter import AgentDeadLetters
from feedhouse.streams.graph_agent import register_graph_agent
from feedhouse.streams.outputs import FlushOutputsBeforeCommit, Outputs
from feedhouse.streams.state_agent import register_state_agent


@dataclass(frozen=True)
class IdentityApp:
    """The Faust app plus what tests and the worker need to reach directly."""

    app: faust.App
    settings: Settings


def create_app(settings: Settings) -> IdentityApp:
    datadir = settings.data_dir / "identity"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}identity",
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store=settings.identity_store,
        datadir=str(datadir),
        topic_partitions=settings.events_partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        # Tansu completes a group join after session_timeout / 2: keep it short.
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        broker_commit_interval=0.5,
        producer_acks=-1,
        # Outputs (mappings, snapshots, changelogs) are many small records: batch them.
        producer_linger=0.005,
        producer_max_batch_size=256 * 1024,
        producer_compression_type="lz4",
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=False,
        stream_wait_empty=False,
    )
    outputs = Outputs(settings)
    dead_letters = AgentDeadLetters(settings, outputs)
    app.sensors.add(FlushOutputsBeforeCommit(outputs))
    register_graph_agent(app, settings, dead_letters, outputs)
    register_state_agent(app, settings, dead_letters, outputs)
    return IdentityApp(app=app, settings=settings)
