"""The alert rules and the Grafana dashboard: promtool checks and unit tests, and every metric
that a rule or panel queries must be one that the control server exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.controlserver.conftest import NEAR_EU

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "alerts.yml"
RULE_TESTS = REPO / "tests" / "monitoring" / "alerts_test.yml"
DASHBOARD = REPO / "monitoring" / "grafana-dashboard.json"
# Grafana's built-in variables, replaced by a value of the same kind before a query is parsed.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def promtool(*args: str) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    assert path, "promtool not found: install the Debian package prometheus (listed in the Makefile's APT_PACKAGES)"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=120)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_panels(panels: list[dict]) -> list[dict]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(dashboard_panels(panel.get("panels", [])))
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """Return (where, PromQL) for every panel target and every query variable of the dashboard."""
    document = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard_panels(document["panels"]):
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"]["query"])
            assert match, f"variable {variable['name']}: only label_values(<selector>, <label>) is checked"
            queries.append((f"variable {variable['name']}", match.group(1)))
    return queries


def metric_names(expression: str) -> set[str]:
    """Parse `expression` with Grafana's variables filled in and return the metric names it selects."""
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    expression = re.sub(r"\$\{?(\w+)\}?", ".*", expression)
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expression}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


@pytest.fixture
def exported_names(api) -> set[str]:
    """Sample names on a live /metrics of the server, with some printers registered."""
    token = api.enrollment_token()
    registered = api.register(token, "printer-0001", **NEAR_EU).json()
    api.heartbeat(registered["printer_token"], "printer-0001", "eu-1", share_state="failed")
    names = set()
    for family in text_string_to_metric_families(api.client.get("/metrics").text):
        names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_rules_pass_promtool_check():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_rules_unit_tests_pass():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_firing_and_blip_cases():
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    for rule in rules():
        checks = [(case["name"], check) for case in cases for check in case["alert_rule_test"]
                  if check["alertname"] == rule["alert"]]
        assert any(check["exp_alerts"] for _, check in checks), f"{rule['alert']} has no case where it fires"
        blips = [name for name, check in checks if "blip" in name and not check["exp_alerts"]]
        assert blips, f"{rule['alert']} has no blip case that must not fire"


def test_every_alert_waits_before_firing():
    for rule in rules():
        assert re.fullmatch(r"\d+m", rule.get("for", "")), f"{rule['alert']} has no `for:` in minutes"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_rule_metrics_are_exported(exported_names):
    for rule in rules():
        missing = metric_names(rule["expr"]) - exported_names
        assert not missing, f"alert {rule['alert']} queries metrics the server does not export: {missing}"


def test_dashboard_metrics_are_exported(exported_names):
    queries = dashboard_queries()
    assert len(queries) > 20
    for where, expression in queries:
        missing = metric_names(expression) - exported_names
        assert not missing, f"{where} queries metrics the server does not export: {missing}"


def test_dashboard_variables_defined():
    document = json.loads(DASHBOARD.read_text())
    defined = {variable["name"] for variable in document["templating"]["list"]}
    # Names starting with two underscores are Grafana's own ($__rate_interval, $__all).
    used = {name for name in re.findall(r"\$\{?(\w+)\}?", DASHBOARD.read_text()) if not name.startswith("__")}
    assert used <= defined, f"undefined dashboard variables: {used - defined}"


def test_dashboard_panels_distinct():
    panels = dashboard_panels(json.loads(DASHBOARD.read_text())["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]


def test_metric_check_catches_unknown_name(exported_names):
    assert metric_names('sum(rate(fleet_no_such_metric_total[$__rate_interval])) / fleet_frontend_capacity{region=~"$region"}') \
        - exported_names == {"fleet_no_such_metric_total"}
