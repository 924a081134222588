"""Charts from the gateway's Redis aggregates, drawn as SVG on the server."""

import re
import time

import pytest

from services.console import metrics
from services.console.charts import Series, line_chart

from .conftest import traffic, write_second

pytestmark = pytest.mark.django_db


def points_of(html: str, chart_id: str) -> int:
    return int(re.search(rf'id="{chart_id}" data-points="(\d+)"|data-points="(\d+)" id="{chart_id}"', html).group(2)
               or 0)


def test_charts_draw_the_points_the_gateway_wrote(alice_client, echo, metrics_redis):
    client, written = metrics_redis
    empty = alice_client.get("/services/local/echo/monitoring/?range=15m").content.decode()
    assert points_of(empty, "chart-latency") == 0 and "No data in this range." in empty

    traffic(client, written, "echo", seconds=60, rps=4)
    html = alice_client.get("/services/local/echo/monitoring/?range=15m").content.decode()
    assert points_of(html, "chart-qps") > 0 and points_of(html, "chart-latency") > 0
    assert "HTTP 200" in html and "HTTP 500" in html and "240 requests" in html
    assert 'id="percentile-note"' in html  # no histogram from the gateway yet: mean and max, said so


def test_the_list_shows_live_qps_and_keeps_polling_while_traffic_flows(alice_client, echo, metrics_redis):
    from services.models import Service

    Service.objects.filter(pk=echo.pk).update(phase="Stopped", desired_state="stopped",
                                              observed_generation=echo.generation)
    client, written = metrics_redis
    assert alice_client.get("/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="service-table").status_code == 286
    # Written a few seconds past now, so a slow machine reading a second or two later still sees 6 a second.
    traffic(client, written, "echo", seconds=25, rps=6, errors_every=100, now=time.time() + 5)
    response = alice_client.get("/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="service-table")
    assert response.status_code == 200 and ">6<" in response.content.decode().replace(" ", "")


def test_long_ranges_read_minutes_and_short_ones_seconds():
    assert metrics.plan("1h", now=7200)[2:] == (30, "s")
    start, end, step, resolution = metrics.plan("30d", now=10**9)
    assert resolution == "m" and step % 60 == 0 and (end - start) / step == 120


def test_percentiles_come_from_histogram_buckets_when_the_gateway_exports_them(echo, metrics_redis):
    client, written = metrics_redis
    now = int(time.time())
    # 100 requests: 50 under 10 ms, 40 in (10, 50], 10 in (50, 250]
    write_second(client, written, "echo", 1, now - 5, requests=100, latency_ms_sum=2000.0,
                 latency_bucket_le_10=50, latency_bucket_le_50=40, latency_bucket_le_250=10, latency_bucket_le_inf=0)
    window = metrics.read_window("local", "echo", [1], "15m", client=client)
    assert window.has_histogram
    bucket = next(b for b in window.buckets if b.requests)
    assert bucket.percentile(0.5) == pytest.approx(10.0)
    assert bucket.percentile(0.9) == pytest.approx(50.0)
    assert 50 < bucket.percentile(0.99) <= 250


def test_a_gap_in_the_data_is_drawn_as_a_gap():
    svg = line_chart("Latency", [Series("mean", [(0, 1.0), (1, 2.0), (2, None), (3, 4.0), (4, 5.0)])], start=0, end=5)
    assert svg.count("<polyline") == 2 and 'data-points="4"' in svg
    assert 'role="img"' in svg and "<title" in svg and "peak 5" in svg


def test_an_llm_service_shows_time_to_first_token_time_per_output_token_and_tokens_per_second(
        alice, alice_client, metrics_redis):
    """The engines' counters as the autoscaler loop samples them from the gateway's engine hash, and the
    gateway's own streamed-answer fields, both in real Redis."""
    from contracts.engine_load import EngineLoad, engine_load_key
    from deployer.autoscaling import AutoscalerLoop
    from services.models import Instance, Project
    from services.writes import service_create

    client, written = metrics_redis
    empty_llm = service_create(actor=alice, project=Project.objects.get(name="team_a"), document={
        "name": "quiet", "processor": "vllm", "model_path": "file:///models/tiny"})
    html = alice_client.get(f"/services/local/{empty_llm.name}/monitoring/?range=15m").content.decode()
    assert "appear once the engine has answered" in html and 'id="chart-tokens"' in html

    service = service_create(actor=alice, project=Project.objects.get(name="team_a"), document={
        "name": "chat", "processor": "vllm", "model_path": "file:///models/tiny"})
    Instance.objects.create(service=service, version=service.versions.get(number=1), name="chat-a", ready=True)
    key = engine_load_key("local", "chat")
    written.append(key)
    now = time.time()
    loop = AutoscalerLoop(client)
    # 200 tokens generated in 2 s at 20 ms each; two first tokens at 90 ms each in the engine.
    client.hset(key, "chat-a", EngineLoad(generation_tokens=1000, tpot_sum=20.0, tpot_count=1000,
                                          ttft_sum=1.0, ttft_count=10, at=now - 4).to_json())
    loop.tick(now=now - 3)
    client.hset(key, "chat-a", EngineLoad(generation_tokens=1200, tpot_sum=24.0, tpot_count=1200,
                                          ttft_sum=1.18, ttft_count=12, at=now - 2).to_json())
    loop.tick(now=now - 1)
    written.extend(k.decode() for k in client.scan_iter("ferry:metrics:*:local:chat:*"))
    # The gateway saw three streamed answers whose first byte came after 150 ms on average.
    write_second(client, written, "chat", 1, int(now) - 2, requests=3, streams=3, ttfb_ms_sum=450.0, ttfb_count=3)

    html = alice_client.get("/services/local/chat/monitoring/?range=15m").content.decode()
    assert re.search(r'id="llm-ttft">150\.0 ms at the gateway · 90\.0 ms in the engine<', html), html
    assert re.search(r'id="llm-tpot">20\.0 ms<', html)
    assert re.search(r'id="llm-tokens">200 \(peak [\d.]+ tokens/s\)<', html)
    assert re.search(r'id="llm-streams">3<', html)
    for chart in ("chart-ttft", "chart-tpot", "chart-tokens"):
        assert points_of(html, chart) > 0, chart
