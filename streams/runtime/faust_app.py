"""The Faust app of a worker, from ``Settings``: broker and credentials, raw bytes on every topic (the codec does
Avro), tables in memory rebuilt from their changelogs, the web server and CORS."""

from __future__ import annotations

from typing import Any

import faust

from salepulse.streams.platform.config import Settings


def _credentials(security: dict[str, str]) -> Any:
    """Map the librdkafka-style security settings onto Faust's credentials object."""
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    if protocol in {"SASL_PLAINTEXT", "SASL_SSL"}:
        ssl_context = None
        if protocol == "SASL_SSL":
            ssl_context = faust.ssl.create_default_context(cafile=security.get("ssl.ca.location"))
        return faust.SASLCredentials(
            username=security.get("sasl.username"),
            password=security.get("sasl.password"),
            mechanism=security.get("sasl.mechanism", "PLAIN"),
            ssl_context=ssl_context,
        )
    if protocol == "SSL":
        context = faust.ssl.create_default_context(cafile=security.get("ssl.ca.location"))
        if security.get("ssl.certificate.location"):
            context.load_cert_chain(security["ssl.certificate.location"], security.get("ssl.key.location"))
        return faust.SSLCredentials(context)
    return None


def faust_app(settings: Settings) -> faust.App:
    """The Faust app of a worker: raw bytes on every topic (the codec does Avro), tables in memory."""
    cors = None
    if settings.cors_origins:
        from aiohttp_cors import ResourceOptions

        # Faust hands these to aiohttp-cors, which also answers the preflight OPTIONS of every route.
        cors = {origin: ResourceOptions(allow_headers=("Content-Type", "Authorization"), allow_methods="*",
                                        expose_headers="*", max_age=600) for origin in settings.cors_origins}
    # Faust's own files (its lock, table offsets) under the state dir, not `<group>-data` in the working directory;
    # Faust creates the last folder only.
    datadir = settings.state_dir / "faust" / settings.worker_group
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.worker_group,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=_credentials(dict(settings.kafka_security)),
        store="memory://",  # tables are rebuilt from their changelog topics on start
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        web_port=settings.http_port,
        web_bind=settings.http_host,
        web_host=settings.http_advertised_host,  # the URL other workers forward member requests to
        web_cors_options=cors,
        producer_acks=-1,
        producer_linger_ms=5,
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,  # a crashed worker's partitions move in seconds, not the default minute
        broker_heartbeat_interval=2.0,
        broker_max_poll_records=2000,
        stream_buffer_maxsize=8192,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=settings.table_standby_replicas,
    )
