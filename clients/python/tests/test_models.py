"""Parsing of the fleet's answers, without a fleet: newer fields are ignored, unknown
statuses and broken records are `ProtocolError`s, not crashes deep in a pipeline."""

import json

import pytest

from fleet_client import JobEvent, JobResult, JobState, ProtocolError

BODY = {
    "job_id": "j1", "status": "completed", "video": "/v.mp4", "created_at_ms": 1, "completed_at_ms": 9,
    "progress": {"done": 2, "total": 2, "ok": 1, "failed": 1, "skipped": 0},
    "stages": {"cpu": {"done": 2, "total": 2}},
    "analyzers": {
        "audio_analysis": {"status": "ok", "result": {"x": 1}, "duration_ms": 3, "worker": "w", "attempts": 1,
                           "backend": "rust", "stage": "cpu", "started_at_ms": 2, "finished_at_ms": 5,
                           "a_field_from_the_future": True},
        "speech_flow": {"status": "failed", "error": "boom", "duration_ms": 1, "worker": "w", "attempts": 3,
                        "backend": "rust", "stage": "cpu"},
    },
    "failed": {"speech_flow": "boom"}, "metadata": None, "request": {"video": "/v.mp4"},
    "another_new_field": 1,
}


def test_a_result_parses_and_says_what_failed():
    r = JobResult.from_dict(BODY)
    assert r.status is JobState.COMPLETED and r.status == "completed"
    assert r.value("audio_analysis") == {"x": 1}
    assert not r.analyzers["audio_analysis"].synthetic
    with pytest.raises(Exception, match="speech_flow of job j1 failed: boom"):
        r.value("speech_flow")


def test_redis_records_give_the_same_view():
    meta = {"status": "completed", "video": "/v.mp4", "total": "2", "created_at_ms": "1", "completed_at_ms": "9",
            "metadata": "null", "request": json.dumps({"video": "/v.mp4"}),
            "plan": json.dumps([{"analyzer": "audio_analysis", "stage": "cpu"}, {"analyzer": "speech_flow", "stage": "cpu"}])}
    results = {k: json.dumps(v) for k, v in BODY["analyzers"].items()}
    assert JobResult.from_redis("j1", meta, results) == JobResult.from_dict(BODY)


@pytest.mark.parametrize("bad", [
    {"job_id": "j", "status": "exploded"},
    {"status": "completed"},
    {"job_id": "j", "status": "completed", "analyzers": {"a": {"status": "weird"}}},
    {"job_id": "j", "status": "completed", "progress": {"done": "many"}},
])
def test_unknown_answers_are_protocol_errors(bad):
    with pytest.raises(ProtocolError):
        JobResult.from_dict(bad)


def test_a_corrupt_redis_record_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="not JSON"):
        JobResult.from_redis("j", {"status": "completed", "plan": "{oops"}, {})


def test_events_parse():
    e = JobEvent.from_dict({"v": 1, "event": "job.completed", "job_id": "j", "status": "completed", "total": 2,
                            "ok": 1, "failed": {"a": "x"}, "skipped": {}, "at_ms": 5})
    assert e.status.is_final and e.failed == {"a": "x"}
