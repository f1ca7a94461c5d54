"""Observability: the metrics of SPEC §10 move by exactly what a known workload does, logs are
JSON lines that carry the request id from gateway to worker, and the dashboard and alert rules
query only metrics that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import Stack, submit, wait_terminal

ROOT = Path(__file__).parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: aiohttp.ClientSession, url: str) -> tuple[str, Samples]:
    async with http.get(url) as answer:
        assert answer.status == 200
        text = await answer.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


async def test_metrics_move_by_the_workload(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    ok, bad = api_name, f"{api_name}-bin"
    stack.add_api(ok, "echo")
    stack.add_api(bad, "failing")
    await stack.gateway()
    ok_worker = await stack.worker(ok)
    bad_worker = await stack.worker(bad)
    gateway_url = f"{stack.base_url}/metrics"
    ok_url = f"http://127.0.0.1:{ok_worker.metrics_port}/metrics"
    bad_url = f"http://127.0.0.1:{bad_worker.metrics_port}/metrics"
    _, gateway_before = await scrape(http, gateway_url)
    _, ok_before = await scrape(http, ok_url)
    _, bad_before = await scrape(http, bad_url)

    ids = [(await submit(http, f"{stack.base_url}/{ok}", json={"n": i}))["id"] for i in range(3)]
    ids += [(await submit(http, f"{stack.base_url}/{bad}", json={}))["id"] for _ in range(2)]
    for i, request_id in enumerate(ids):
        await wait_terminal(http, f"{stack.base_url}/{ok if i < 3 else bad}/{request_id}")

    gateway_text, gateway_after = await scrape(http, gateway_url)
    ok_text, ok_after = await scrape(http, ok_url)
    _, bad_after = await scrape(http, bad_url)

    def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(gateway_after, gateway_before, "asyncgw_requests_submitted_total", api=ok) == 3
    assert delta(gateway_after, gateway_before, "asyncgw_requests_submitted_total", api=bad) == 2
    posts = {"api": ok, "method": "POST", "code": "202"}
    assert delta(gateway_after, gateway_before, "asyncgw_http_requests_total", **posts) == 3
    timed = {"api": ok, "method": "POST"}
    assert (
        delta(gateway_after, gateway_before, "asyncgw_http_request_duration_seconds_count", **timed)
        == 3
    )

    done = {"api": ok, "status": "completed"}
    assert delta(ok_after, ok_before, "asyncgw_requests_finished_total", **done) == 3
    assert delta(ok_after, ok_before, "asyncgw_handler_duration_seconds_count", **done) == 3
    assert delta(ok_after, ok_before, "asyncgw_queue_wait_seconds_count", api=ok) == 3
    assert value(ok_after, "asyncgw_requests_in_progress", api=ok) == 0
    failed = {"api": bad, "status": "failed"}
    assert delta(bad_after, bad_before, "asyncgw_requests_finished_total", **failed) == 2
    assert value(bad_after, "asyncgw_requests_in_progress", api=bad) == 0
    assert delta(bad_after, bad_before, "asyncgw_retries_total", api=bad) == 0

    for text in (gateway_text, ok_text):
        checked = promtool("check", "metrics", stdin=text)
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_logs_are_json_lines_carrying_the_request_id(
    stack: Stack, http: aiohttp.ClientSession, api_name: str
) -> None:
    stack.env["ASYNCGW_LOG_LEVEL"] = "DEBUG"
    stack.add_api(api_name, "echo")
    gateway = await stack.gateway()
    worker = await stack.worker(api_name)
    accepted = await submit(http, f"{stack.base_url}/{api_name}", json={"secret": "s3cr3t"})
    await wait_terminal(http, f"{stack.base_url}/{api_name}/{accepted['id']}")
    await worker.wait_for_output(accepted["id"])
    for proc, service in ((gateway, "gateway"), (worker, "worker")):
        lines = [json.loads(line) for line in proc.output().splitlines() if line.strip()]
        assert lines, service
        for line in lines:
            assert {"ts", "level", "msg", "service"} <= set(line), line
            assert line["service"] == service
        mine = [line for line in lines if line.get("request_id") == accepted["id"]]
        assert mine and all(line["api"] == api_name for line in mine), service
        assert "s3cr3t" not in proc.output()  # payloads are never logged


def queried_metrics(expressions: list[str]) -> set[str]:
    names = set()
    for expr in expressions:
        for name in re.findall(r"asyncgw_[a-z_]+", expr):
            names.add(re.sub(r"_(bucket|count|sum|total)$", "", name))
    return names


async def test_dashboard_and_rules_query_metrics_that_exist(
    local: Stack, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    dashboard = json.loads((ROOT / "k8s/monitoring/grafana-dashboard.json").read_text())
    rules = yaml.safe_load((ROOT / "k8s/monitoring/prometheus-rules.yaml").read_text())
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": rules["spec"]["groups"]}))
    checked = promtool("check", "rules", str(rule_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    dashboard_exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rule_exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    wanted = queried_metrics(dashboard_exprs + rule_exprs)
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("queue depth", "in flight", "oldest", "replicas", "submit", "completion",
                  "queue wait", "handler", "webhook"):  # fmt: skip
        assert topic in titles

    local.env["ASYNCGW_SCALER_INTERVAL"] = "0.2s"
    local.add_api("echo", "echo")
    await local.up()  # one process: gateway, worker and local scaler share one registry
    accepted = await submit(http, f"{local.base_url}/echo", json={})
    await wait_terminal(http, f"{local.base_url}/echo/{accepted['id']}")
    text, _ = await scrape(http, f"{local.base_url}/metrics")
    exposed = {
        re.sub(r"_(total)$", "", family.name) for family in text_string_to_metric_families(text)
    }
    missing = wanted - exposed
    assert not missing, f"queried but never exposed: {sorted(missing)}"
    assert wanted >= {"asyncgw_queue_messages", "asyncgw_in_flight", "asyncgw_replicas"}
