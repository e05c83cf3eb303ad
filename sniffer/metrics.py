"""The metrics the sniffer serves over HTTP (Prometheus): its counters, the captures, the writes.

The sniffing thread publishes counter snapshots; the HTTP thread only ever reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from sniffer.errors import HiveError

METRIC_PREFIX = "dhcp_hive_mind_"
# The counters the tracking specification suggests (its section 1.12: packets dropped, replies
# ignored, leases ended, by why), published as 0 until they count (framing_error is not counted:
# a framing error alone does not drop a packet, and the pipeline does not report it).
SPEC_COUNTERS = (
    "rx_packets", "dropped_short", "dropped_no_cookie", "dropped_bad_53", "capture_truncated",
    "ignored_type", "rogue_reply", "rogue_nak", "ack_to_inform", "bad_yiaddr", "no_lease_time",
    "zero_lease", "late_other_server", "ack_not_selected", "stale", "already_expired",
    "reassigned", "superseded", "nak_deleted", "nak_uncorrelated", "decline_deleted",
    "release_deleted", "txn_evicted", "duplicates",
)
# Where the capture drops packets, as tcpdump reports them: the kernel (its buffer was full)
# and the interface (its driver); the metric's `where` label.
DROP_PLACES = ("kernel", "interface")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)


class SniffError(HiveError):
    """A local problem outside capture and Redis (such as a metrics port in use)."""


class _CounterSnapshot(Collector):
    """The pipeline's and tracker's counters as last published by the sniffing thread (a new
    dict each time, so the HTTP thread never reads one that is changing)."""

    def __init__(self) -> None:
        self.values: Mapping[str, int] = dict.fromkeys(SPEC_COUNTERS, 0)

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, value in sorted(self.values.items()):
            if name.isidentifier() and name.isascii():
                yield CounterMetricFamily(METRIC_PREFIX + name.lower(),
                                          f"Counter {name} (see the specification, 1.12)",
                                          value=value)


class Metrics:
    """Everything the metrics endpoint serves, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.counters = _CounterSnapshot()
        reg.register(self.counters)
        self.capture_drops = PromCounter(
            METRIC_PREFIX + "capture_dropped_packets", "Packets lost by the capture, as tcpdump "
            "reports them when it stops (where: kernel, interface)",
            ["interface", "where"], registry=reg)
        self.capture_restarts = PromCounter(
            METRIC_PREFIX + "capture_restarts", "Capture processes replaced (reason: scheduled, "
            "exited)", ["interface", "process", "reason"], registry=reg)
        self.capture_up = Gauge(METRIC_PREFIX + "capture_up", "1 while the interface is "
                                "captured", ["interface"], registry=reg)
        self.redis_write_seconds = Histogram(
            METRIC_PREFIX + "redis_write_seconds", "Duration of one batch written to Redis",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.redis_write_errors = PromCounter(
            METRIC_PREFIX + "redis_write_errors", "Batches Redis did not take (retried)",
            registry=reg)
        self.redis_up = Gauge(METRIC_PREFIX + "redis_up", "1 while Redis takes the writes, 0 "
                              "while they fail and wait", registry=reg)
        self.pending_dropped = PromCounter(
            METRIC_PREFIX + "pending_dropped", "Writes dropped, the oldest first, because more "
            "than --max-pending waited for Redis (kind: grant, revoke, rogue)", ["kind"],
            registry=reg)
        self.expired_when_written = PromCounter(
            METRIC_PREFIX + "expired_when_written", "Leases that had already expired when "
            "Redis took them, late (after an outage): their expiry removes them at once",
            registry=reg)
        self.reasserted = PromCounter(
            METRIC_PREFIX + "reasserted", "Writes sent again because Redis may have lost them "
            "(reason: failure: a write or check failed; restarted: a master's run id changed; "
            "emptied: Redis lost the writer's marker, every current lease is sent again)",
            ["reason"], registry=reg)
        self.store_resets = PromCounter(
            METRIC_PREFIX + "store_resets", "Times Redis was found to have lost writes it took "
            "(kind: restarted: a master's run id changed, a restart or a failover; emptied: "
            "the writer's marker was gone)", ["kind"], registry=reg)
        for reason in ("failure", "restarted", "emptied"):
            self.reasserted.labels(reason)
        for kind in ("restarted", "emptied"):
            self.store_resets.labels(kind)
        self.redis_up.set(1)
        for kind in ("grant", "revoke", "rogue"):
            self.pending_dropped.labels(kind)
        self.capture_to_redis_seconds = Histogram(
            METRIC_PREFIX + "capture_to_redis_seconds", "From the capture time of a packet "
            "that changed a lease (ACK, RELEASE...) to its write in Redis",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.queue_depth = Gauge(METRIC_PREFIX + "queue_depth", "Captured datagrams waiting "
                                 "for the pipeline", registry=reg)
        self.pending_writes = Gauge(METRIC_PREFIX + "pending_writes", "Lease writes waiting "
                                    "for Redis", registry=reg)
        self.active_leases = Gauge(METRIC_PREFIX + "active_leases", "Leases the tracker holds "
                                   "that have not expired", registry=reg)
        # The endpoint runs in a thread of its own and answers while the sniffing loop is
        # stuck: a heartbeat that stops moving is what tells.
        self.heartbeat = Gauge(METRIC_PREFIX + "heartbeat_timestamp_seconds", "Unix time the "
                               "sniffing loop last published its counters (every second)",
                               registry=reg)
        self.heartbeat.set_to_current_time()
        self.clock_skew = Gauge(
            METRIC_PREFIX + "clock_skew_seconds", "This host's clock minus Redis's (TIME), "
            "measured at start and every few seconds (spec R-HV-9)", registry=reg)

    def watch(self, interface: str) -> None:
        """An interface's capture series, at 0 from the start: a counter that appears at its
        first drop or restart would show no increase to rates and alerts."""
        for place in DROP_PLACES:
            self.capture_drops.labels(interface, place)
        for process, reason in (("tcpdump", "scheduled"), ("tcpdump", "exited"),
                                ("tshark", "exited")):
            self.capture_restarts.labels(interface, process, reason)

    def serve(self, port: int, address: str) -> Callable[[], None]:
        """Serve /metrics over HTTP in a thread; returns the function that stops it."""
        try:
            server, thread = start_http_server(port, address, registry=self.registry)
        except OSError as error:
            raise SniffError(f"metrics on {address}:{port}: {error.strerror}") from None

        def close() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

        return close

