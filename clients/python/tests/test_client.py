"""The Python client against the real fleet (dispatcher + SYNTHETIC workers from the
`fleet` fixture, tests/py/fleet_fixture.py): submit over AMQP and HTTP, wait on events and by
polling, read typed results over HTTP and from Redis, and the errors a pipeline meets."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest
import redis

from fleet_client import (
    AnalyzerFailed,
    ConfigurationError,
    FleetClient,
    FleetError,
    InvalidRequest,
    JobNotFound,
    JobResult,
    JobState,
    OutcomeStatus,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)

# cut_analysis (stage4) and audio_analysis (cpu): quick SYNTHETIC analyzers on both workers.
QUICK = ["cut_analysis", "audio_analysis"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_amqp_submit_is_confirmed_and_the_event_ends_the_wait(fleet):
    with fleet.client() as c:
        trace_id = uuid.uuid4().hex
        traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
        sub = c.submit_amqp("/videos/py-amqp.mp4", analyzers=QUICK, metadata={"post_id": 7},
                            traceparent=traceparent)
        # A poll interval longer than the timeout: only the job.completed event can end the
        # wait in time (the status is read once before listening, and once per event).
        res = c.wait(sub.job_id, timeout=30, poll_interval=120)
    assert isinstance(res, JobResult)
    assert res.job_id == sub.job_id
    assert res.status is JobState.COMPLETED and res.is_final
    assert sorted(res.analyzers) == sorted(QUICK)
    assert res.job.progress.total == 2 and res.job.progress.ok == 2
    assert res.metadata == {"post_id": 7}
    for name in QUICK:
        o = res.analyzers[name]
        assert o.status is OutcomeStatus.OK and o.synthetic, o
        assert o.finished_at_ms >= o.started_at_ms > 0
        assert res.value(name) is not None
    # The job's trace continues the caller's: same trace id in the job hash.
    stored = redis.Redis.from_url(fleet.redis_url, decode_responses=True).hget(
        f"{fleet.prefix}:job:{sub.job_id}", "traceparent")
    assert stored and stored.split("-")[1] == trace_id, stored


def test_the_message_id_is_the_job_id(fleet):
    job_id = f"py-{uuid.uuid4().hex}"
    with fleet.client() as c:
        sub = c.submit_amqp("/videos/py-id.mp4", analyzers=["audio_analysis"], job_id=job_id)
        assert sub.job_id == job_id
        assert c.wait(job_id, timeout=30).job_id == job_id


def test_an_idempotency_key_names_one_job_over_amqp_and_http(fleet):
    with fleet.client() as c:
        key = f"scrape-{uuid.uuid4().hex[:8]}"
        a = c.submit_amqp("/videos/py-key.mp4", analyzers=["audio_analysis"], idempotency_key=key)
        b = c.submit_amqp("/videos/py-key.mp4", analyzers=["audio_analysis"], idempotency_key=key)
        assert a.job_id == b.job_id
        c.wait(a.job_id, timeout=30)
        # The HTTP API finds the same job for the key and says it is not new.
        h = c.submit_http("/videos/py-key.mp4", analyzers=["audio_analysis"], idempotency_key=key)
        assert h.job_id == a.job_id and h.created is False


def test_http_submit_and_polling_wait_without_amqp(fleet):
    with fleet.client(amqp_url=None) as c:
        sub = c.submit("/videos/py-http.mp4", analyzers=QUICK)  # HTTP: no amqp_url
        assert sub.created is True
        res = c.wait(sub.job_id, timeout=30, poll_interval=0.2)
        assert res.status == "completed"
        status = c.status(sub.job_id)
        assert status.is_final and status.progress.done == 2
        assert set(status.stages) == {"stage4", "cpu"}
        assert any(j.job_id == sub.job_id for j in c.recent(limit=50))


def test_wait_polls_when_the_broker_is_unreachable(fleet):
    with fleet.client(amqp_url=None) as c:
        sub = c.submit_http("/videos/py-nobroker.mp4", analyzers=["audio_analysis"])
    dead_broker = f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2f"
    with fleet.client(amqp_url=dead_broker, timeout=2) as c:
        assert c.wait(sub.job_id, timeout=30, poll_interval=0.2).status is JobState.COMPLETED


def test_results_from_redis_match_the_http_api(fleet):
    with fleet.client() as c:
        sub = c.submit_http("/videos/py-redis.mp4", analyzers=["temporal_flow"], metadata={"a": [1, 2]})
        over_http = c.wait(sub.job_id, timeout=30)
    # A reader with nothing but Redis (no dispatcher URL) sees the same typed result.
    with FleetClient(redis_url=fleet.redis_url, prefix=fleet.prefix) as r:
        from_redis = r.result(sub.job_id)
        assert r.wait(sub.job_id, timeout=5).status is JobState.COMPLETED
    assert from_redis == over_http
    # temporal_flow pulled in its hard dependency.
    assert "cut_analysis" in from_redis.analyzers


def test_refusals_are_clear_exceptions(fleet):
    with fleet.client() as c:
        with pytest.raises(InvalidRequest) as e:
            c.submit_http("/videos/x.mp4", analyzers=["no_such_analyzer"])
        assert e.value.status == 422 and "no_such_analyzer" in str(e.value)
        with pytest.raises(InvalidRequest, match="scheme"):
            c.submit_http("ftp://host/x.mp4")
        # Refused before anything is sent: the dispatcher would dead-letter it silently.
        with pytest.raises(InvalidRequest, match="video"):
            c.submit_amqp("   ")
        with pytest.raises(InvalidRequest, match="job_id"):
            c.submit_amqp("/v.mp4", job_id="has spaces")
        with pytest.raises(InvalidRequest, match="metadata"):
            c.submit_http("/v.mp4", metadata={"bad": object()})
        with pytest.raises(JobNotFound):
            c.result(f"nope-{uuid.uuid4().hex}")
        with pytest.raises(JobNotFound):
            c.result_from_redis(f"nope-{uuid.uuid4().hex}")
        with pytest.raises(ConfigurationError):
            c.submit_http("/v.mp4", job_id="mine")
    with fleet.client(token="wrong") as c, pytest.raises(Unauthorized, match="FLEET_API_TOKEN"):
        c.status("anything")
    with pytest.raises(ConfigurationError):
        FleetClient()


def test_a_failed_analyzer_is_reported_not_hidden(fleet):
    with fleet.client() as c:
        sub = c.submit_http("/videos/py-fail.mp4", analyzers=["audio_analysis"])
        res = c.wait(sub.job_id, timeout=30)
        with pytest.raises(AnalyzerFailed, match="was not part of the job"):
            res.value("object_detection")
        assert res.failed == {} and res.skipped == {}


def test_wait_timeout_says_where_the_job_stands(fleet):
    # A job that stays running: its record written the way the dispatcher writes it, with
    # no task on any queue (SYNTHETIC analyzers are too quick to outwait reliably).
    job_id = f"py-stuck-{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(fleet.redis_url)
    plan = json.dumps([{"analyzer": "audio_analysis", "stage": "cpu", "needs": [], "uses": []}])
    r.hset(f"{fleet.prefix}:job:{job_id}", mapping={
        "status": "running", "video": "/v.mp4", "total": 1, "created_at_ms": 1, "updated_at_ms": 1,
        "request": "{}", "plan": plan, "metadata": "null"})
    for client in (fleet.client(), FleetClient(redis_url=fleet.redis_url, prefix=fleet.prefix)):
        with client as c, pytest.raises(WaitTimeout) as e:
            c.wait(job_id, timeout=0.5, poll_interval=0.1)
        assert e.value.job_id == job_id and e.value.last_status == "running" and e.value.retryable
        assert "keeps running" in str(e.value)


def test_waiting_on_an_unknown_job_ends_after_the_intake_grace(fleet):
    with fleet.client() as c, pytest.raises(JobNotFound):
        c.wait(f"never-{uuid.uuid4().hex}", timeout=30, poll_interval=0.1, intake_grace=0.3)


def test_cancel(fleet):
    with fleet.client() as c:
        sub = c.submit_http("/videos/py-cancel.mp4", analyzers=["qwen2_vl_temporal", "cut_analysis"])
        status = c.cancel(sub.job_id)
        assert status in ("cancelled", "completed")
        assert c.wait(sub.job_id, timeout=30).is_final


def test_events_stream_yields_the_jobs_events(fleet):
    with fleet.client() as c:
        stream = iter(c.events(timeout=20))
        sub = c.submit_http("/videos/py-events.mp4", analyzers=["audio_analysis"])
        for event in stream:
            if event.job_id == sub.job_id:
                assert event.event == "job.completed" and event.status is JobState.COMPLETED
                assert event.total == 1 and event.ok == 1
                break
        else:
            pytest.fail("no job.completed event for the job")


def test_outages_are_unavailable_and_retryable(fleet):
    port = closed_port()
    with FleetClient(http_url=f"http://127.0.0.1:{port}") as c:
        with pytest.raises(Unavailable, match="cannot reach the dispatcher") as e:
            c.status("x")
        assert e.value.retryable
    with FleetClient(amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/%2f", timeout=2) as c:
        with pytest.raises(Unavailable, match="RabbitMQ"):
            c.submit_amqp("/v.mp4")
    with FleetClient(redis_url=f"redis://127.0.0.1:{port}/0", timeout=2) as c:
        with pytest.raises(Unavailable, match="Redis"):
            c.result("x")


def test_a_wrong_prefix_is_named_not_swallowed(fleet):
    # No dispatcher ever declared this prefix's queue: the publish comes back unroutable.
    with fleet.client(prefix=f"nobody{uuid.uuid4().hex[:6]}") as c:
        with pytest.raises(FleetError, match="does not exist"):
            c.submit_amqp("/v.mp4")


def test_from_env_reads_the_fleets_own_variables(fleet):
    env = {"FLEET_URL": fleet.http_url, "FLEET_AMQP_URL": fleet.amqp_url, "FLEET_REDIS_URL": fleet.redis_url,
           "FLEET_PREFIX": fleet.prefix, "FLEET_API_TOKEN": fleet.token}
    with FleetClient.from_env(env) as c:
        assert (c.http_url, c.prefix, c.token) == (fleet.http_url, fleet.prefix, fleet.token)
        sub = c.submit("/videos/py-env.mp4", analyzers=["audio_analysis"])  # AMQP: amqp_url set
        assert c.wait(sub.job_id, timeout=30).status is JobState.COMPLETED
    d = FleetClient.from_env({})
    assert (d.http_url, d.prefix, d.token) == ("http://127.0.0.1:8080", "fleet", None)


def test_a_failing_analyzer_fails_alone(fleet):
    from fleet_fixture import FAILING

    with fleet.client() as c:
        res = c.wait(c.submit_http("/videos/py-failing.mp4", analyzers=[FAILING, "audio_analysis"]).job_id, timeout=30)
    assert res.status is JobState.COMPLETED  # a failing analyzer does not fail the job
    assert res.failed[FAILING] == "synthetic permanent failure"
    with pytest.raises(AnalyzerFailed, match=f"{FAILING} of job .* failed: synthetic permanent failure"):
        res.value(FAILING)
    assert res.value("audio_analysis") is not None
