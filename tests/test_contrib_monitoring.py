"""contrib/'s Prometheus alert rules and Grafana dashboard: the rules load, each alert fires on its
fault and stays quiet when healthy (promtool's own unit tests), the dashboard imports with its
data source asked for, and every metric both read is one a running sniffer serves.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, require_root, require_tool
from lab import RedisServer, fetch, sniff_daemon, wait_for
from prometheus_client.parser import text_string_to_metric_families
from specharness import (
    ACK,
    RELEASE,
    REQUEST,
    S1,
    Packet,
    X,
    client_msg,
    eth_frame,
    o_lease,
    o_req,
    o_server,
    server_msg,
)
from test_sniff import METRICS_PORT, Link

CONTRIB = REPO / "contrib"
RULES = CONTRIB / "prometheus-alerts.yml"
RULE_TESTS = CONTRIB / "prometheus-alerts.test.yml"
DASHBOARD = CONTRIB / "grafana-dashboard.json"
# Read by the rules and the dashboard before the sniffer serves it. Once it is served, drop it
# here and in the comment of its rule.
NOT_YET: set[str] = set()
METRIC = re.compile(r"\bdhcp_hive_mind_[a-z0-9_]+")
# The sample names of a metric that has no series yet, from its type and its family's name
# (prometheus_client's parser names counter families without their _total).
SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
                   "histogram": ("_bucket", "_count", "_sum", "_created")}


def promtool(*args: str | Path, cwd: Path | None = None,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, input=stdin, timeout=60, check=False)


def rules() -> list[dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queried_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_queries() -> list[str]:
    exprs = [target["expr"] for panel in queried_panels() for target in panel["targets"]]
    return exprs + [var["query"]["query"] for var in dashboard()["templating"]["list"]]


# ---- the alert rules -------------------------------------------------------------------------

def test_the_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_each_alert_fires_on_its_fault_and_not_when_healthy() -> None:
    done = promtool("test", "rules", RULE_TESTS.name, cwd=CONTRIB)
    assert done.returncode == 0, done.stdout + done.stderr
    # promtool matches each expected alert list exactly: an alert that also fires for the
    # healthy series next to the faulty ones fails it. Each alert needs both kinds of case.
    cases: dict[str, Any] = yaml.safe_load(RULE_TESTS.read_text())
    checks = [check for test in cases["tests"] for check in test["alert_rule_test"]]
    for alert in (rule["alert"] for rule in rules()):
        expected = [check["exp_alerts"] for check in checks if check["alertname"] == alert]
        assert any(expected), f"{alert} is never shown firing"
        assert [] in expected, f"{alert} is never shown quiet"


def test_a_rule_that_never_fires_fails_the_unit_tests(tmp_path: Path) -> None:
    broken: dict[str, Any] = yaml.safe_load(RULES.read_text())
    broken["groups"][0]["rules"][0]["expr"] = "vector(0) > 1"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(broken))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    done = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    assert f"alertname: {broken['groups'][0]['rules'][0]['alert']}" in done.stdout + done.stderr


# ---- the dashboard ---------------------------------------------------------------------------

def test_the_dashboard_asks_for_its_data_source_and_filters_by_job_and_instance() -> None:
    board = dashboard()
    assert [(i["name"], i["type"], i["pluginId"]) for i in board["__inputs"]] == \
        [("DS_PROMETHEUS", "datasource", "prometheus")]
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert set(variables) == {"job", "instance"}
    assert "$job" in variables["instance"]["query"]["query"]
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = queried_panels()
    assert len(panels) >= 10
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"] == source
        for target in panel["targets"]:
            assert target["datasource"] == source
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
            # every series it reads is narrowed to the chosen jobs and sniffers
            selectors = re.findall(r"\b(?:up|dhcp_hive_mind_\w+)(\{[^}]*\})?", target["expr"])
            assert selectors, target["expr"]
            for labels in selectors:
                assert 'job=~"$job"' in labels and 'instance=~"$instance"' in labels, \
                    f"panel {panel['title']!r}: {target['expr']}"
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule, Grafana's variables filled in."""
    filled = {"$__rate_interval": "5m", "$job": ".*", "$instance": ".*"}
    records = []
    for n, expr in enumerate(dashboard_queries()):
        if expr.startswith("label_values("):  # Grafana's own function: its selector is PromQL
            expr = expr.removeprefix("label_values(").rpartition(",")[0]
        for variable, value in filled.items():
            expr = expr.replace(variable, value)
        records.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


# ---- the metrics they read, against a running sniffer ----------------------------------------

def lease_traffic() -> list[bytes]:
    """A grant, a renewal, the address reassigned, released, and a rogue server's ACK: every
    lease counter the dashboard shows counts once."""
    a, b, c = (bytes.fromhex(f"02000000010{n}") for n in range(3))
    ip, other = "10.9.0.10", "10.9.0.11"

    def request_ack(xid: int, mac: bytes, address: str, server: str) -> list[Packet]:
        return [Packet(0, client_msg(REQUEST, xid, mac, o_req(address), o_server(server)),
                       "0.0.0.0", "255.255.255.255", 68, 67),
                Packet(0, server_msg(ACK, xid, mac, o_lease(600), server=server, yi=address),
                       server, "255.255.255.255", 67, 68)]

    packets = [*request_ack(1, a, ip, S1), *request_ack(2, a, ip, S1),
               *request_ack(3, b, ip, S1),
               Packet(0, client_msg(RELEASE, 4, b, o_server(S1), ci=ip), ip, S1, 68, 67),
               *request_ack(5, c, other, X)]
    return [eth_frame(packet) for packet in packets]


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a real sniffer that has seen lease_traffic()."""
    require_root("live capture in a network namespace")
    for name in ("tcpdump", "tshark", "redis-server"):
        require_tool(name)
    redis = RedisServer()
    link = Link()
    daemon = sniff_daemon(link.ns, ["-i", "v0", "--redis-url", redis.url, "--allow-server", S1,
                                    "--metrics-port", str(METRICS_PORT)],
                          tmp_path_factory.mktemp("sniff") / "sniff.log")
    try:
        daemon.wait_output(r"capturing on v0")
        link.send(lease_traffic())
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        wait_for(lambda: "dhcp_hive_mind_rogue_reply_total 1.0" in fetch(link.ns, url),
                 "the rogue reply counted")
        yield fetch(link.ns, url)
    finally:
        daemon.stop()
        link.close()
        redis.close()


def served(text: str) -> set[str]:
    """Every sample name a scrape has, or would have once its labelled series appear."""
    names = set()
    for family in text_string_to_metric_families(text):
        if family.samples:
            names.update(sample.name for sample in family.samples)
        else:
            names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type])
    return names


def test_every_metric_read_is_served(scrape: str) -> None:
    names = served(scrape)
    assert not NOT_YET & names, "now served: drop it from NOT_YET and from its rule's comment"
    read = {name for expr in dashboard_queries() for name in METRIC.findall(expr)}
    assert {"dhcp_hive_mind_granted_total", "dhcp_hive_mind_capture_up"} <= read
    assert read - NOT_YET - names == set(), "the dashboard reads what no sniffer serves"
    read = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert read - NOT_YET - names == set(), "the alerts read what no sniffer serves"


def test_the_capture_series_start_at_zero(scrape: str) -> None:
    """The drop alert and the restart panel read increases: a series that appeared at its first
    drop would show none."""
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(scrape) for sample in family.samples}
    for where in ("kernel", "interface"):
        labels = (("interface", "v0"), ("where", where))
        assert samples[("dhcp_hive_mind_capture_dropped_packets_total", labels)] == 0
    for process, reason in (("tcpdump", "scheduled"), ("tcpdump", "exited"), ("tshark", "exited")):
        labels = (("interface", "v0"), ("process", process), ("reason", reason))
        assert samples[("dhcp_hive_mind_capture_restarts_total", labels)] == 0
    assert abs(samples[("dhcp_hive_mind_heartbeat_timestamp_seconds", ())] - time.time()) < 10


def test_the_served_metrics_pass_promtool_lint(scrape: str) -> None:
    done = promtool("check", "metrics", stdin=scrape)
    assert done.returncode == 0, done.stdout + done.stderr
