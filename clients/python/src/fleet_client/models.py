"""Typed views of what the fleet returns. Field names are the fleet's wire names
(docs/openapi.json for HTTP, README "Redis layout" for Redis); unknown extra fields are ignored,
so a newer fleet that adds fields does not break an older client."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from .errors import AnalyzerFailed, ProtocolError


class JobState(str, enum.Enum):
    """A job's status. Compares equal to its string (``JobState.COMPLETED == "completed"``)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.COMPLETED, JobState.CANCELLED)

    @classmethod
    def parse(cls, value: Any) -> "JobState":
        try:
            return cls(value)
        except ValueError:
            raise ProtocolError(f"unknown job status {value!r}: is this client older than the fleet?") from None


class OutcomeStatus(str, enum.Enum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"

    @classmethod
    def parse(cls, value: Any) -> "OutcomeStatus":
        try:
            return cls(value)
        except ValueError:
            raise ProtocolError(f"unknown analyzer status {value!r}") from None


def _need(d: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise ProtocolError(f"{what} without {key!r}: {str(d)[:200]}")
    return d[key]


def _int(v: Any, default: int = 0) -> int:
    if v is None or v == "":
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ProtocolError(f"expected a number, got {v!r}") from None


@dataclass(frozen=True)
class Submission:
    """What a submit returns. ``created`` is False when an idempotency key named an existing
    job (that job's id is returned); over AMQP it is always True, the broker cannot tell."""

    job_id: str
    created: bool = True


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    ok: int
    failed: int
    skipped: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Progress":
        return cls(**{k: _int(d.get(k)) for k in ("done", "total", "ok", "failed", "skipped")})


@dataclass(frozen=True)
class StageProgress:
    done: int
    total: int


@dataclass(frozen=True)
class JobStatus:
    """``GET /v1/jobs/{id}``: a job's status and progress, also per stage."""

    job_id: str
    status: JobState
    video: str
    created_at_ms: int
    completed_at_ms: Optional[int]
    progress: Progress
    stages: Dict[str, StageProgress] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JobStatus":
        stages = {
            name: StageProgress(_int(s.get("done")), _int(s.get("total")))
            for name, s in (d.get("stages") or {}).items()
        }
        completed = d.get("completed_at_ms")
        return cls(
            job_id=str(_need(d, "job_id", "job status")),
            status=JobState.parse(_need(d, "status", "job status")),
            video=str(d.get("video", "")),
            created_at_ms=_int(d.get("created_at_ms")),
            completed_at_ms=None if completed in (None, "") else _int(completed),
            progress=Progress.from_dict(d.get("progress") or {}),
            stages=stages,
        )


@dataclass(frozen=True)
class AnalyzerOutcome:
    """One analyzer's final outcome (the JSON in ``fleet:job:{id}:results``)."""

    status: OutcomeStatus
    result: Any = None
    error: Optional[str] = None
    duration_ms: int = 0
    worker: str = ""
    attempts: int = 0
    #: ``synthetic`` (test/benchmark stand-in), ``rust``, ``onnx:<provider>``, ``http``, ``none``.
    backend: str = ""
    stage: str = ""
    started_at_ms: int = 0
    finished_at_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status is OutcomeStatus.OK

    @property
    def synthetic(self) -> bool:
        """True for SYNTHETIC stand-ins (tests and benchmarks only): not a real analysis."""
        return self.backend == "synthetic"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AnalyzerOutcome":
        return cls(
            status=OutcomeStatus.parse(_need(d, "status", "analyzer outcome")),
            result=d.get("result"),
            error=d.get("error"),
            duration_ms=_int(d.get("duration_ms")),
            worker=str(d.get("worker") or ""),
            attempts=_int(d.get("attempts")),
            backend=str(d.get("backend") or ""),
            stage=str(d.get("stage") or ""),
            started_at_ms=_int(d.get("started_at_ms")),
            finished_at_ms=_int(d.get("finished_at_ms")),
        )


@dataclass(frozen=True)
class JobResult:
    """``GET /v1/jobs/{id}/result`` (or the same read from Redis): status and every outcome.

    A job completes even when analyzers fail: check ``failed``, or use ``value(name)``, which
    raises ``AnalyzerFailed`` for an analyzer without a usable result."""

    job: JobStatus
    analyzers: Dict[str, AnalyzerOutcome]
    failed: Dict[str, Optional[str]]
    metadata: Any = None
    request: Any = None

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def status(self) -> JobState:
        return self.job.status

    @property
    def is_final(self) -> bool:
        return self.job.is_final

    @property
    def skipped(self) -> Dict[str, Optional[str]]:
        return {k: o.error for k, o in self.analyzers.items() if o.status is OutcomeStatus.SKIPPED}

    def value(self, analyzer: str) -> Any:
        """The ``result`` of an analyzer that ended ``ok``; raises ``AnalyzerFailed`` otherwise."""
        o = self.analyzers.get(analyzer)
        if o is None:
            status = "has no outcome yet" if not self.is_final else "was not part of the job"
            raise AnalyzerFailed(self.job_id, analyzer, status, None)
        if not o.ok:
            raise AnalyzerFailed(self.job_id, analyzer, o.status.value, o.error)
        return o.result

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JobResult":
        analyzers = {k: AnalyzerOutcome.from_dict(v) for k, v in (d.get("analyzers") or {}).items()}
        return cls(
            job=JobStatus.from_dict(d),
            analyzers=analyzers,
            failed=dict(d.get("failed") or {}),
            metadata=d.get("metadata"),
            request=d.get("request"),
        )

    @classmethod
    def from_redis(cls, job_id: str, meta: Mapping[str, str], results: Mapping[str, str]) -> "JobResult":
        """Builds the same view from the two Redis hashes (``fleet:job:{id}``, ``...:results``)."""

        def loads(raw: Any, what: str) -> Any:
            if raw in (None, ""):
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise ProtocolError(f"job {job_id}: {what} is not JSON") from None

        analyzers = {k: AnalyzerOutcome.from_dict(loads(v, f"outcome of {k}")) for k, v in results.items()}
        plan: List[Mapping[str, Any]] = loads(meta.get("plan"), "plan") or []
        stages: Dict[str, List[int]] = {}
        for t in plan:
            s = stages.setdefault(str(t.get("stage")), [0, 0])
            s[1] += 1
            if t.get("analyzer") in analyzers:
                s[0] += 1
        count = lambda st: sum(1 for o in analyzers.values() if o.status is st)  # noqa: E731
        completed = meta.get("completed_at_ms")
        job = JobStatus(
            job_id=job_id,
            status=JobState.parse(meta.get("status")),
            video=meta.get("video", ""),
            created_at_ms=_int(meta.get("created_at_ms")),
            completed_at_ms=None if completed in (None, "") else _int(completed),
            progress=Progress(
                done=len(analyzers),
                total=_int(meta.get("total")),
                ok=count(OutcomeStatus.OK),
                failed=count(OutcomeStatus.FAILED),
                skipped=count(OutcomeStatus.SKIPPED),
            ),
            stages={k: StageProgress(v[0], v[1]) for k, v in sorted(stages.items())},
        )
        return cls(
            job=job,
            analyzers=dict(sorted(analyzers.items())),
            failed={k: o.error for k, o in analyzers.items() if o.status is OutcomeStatus.FAILED},
            metadata=loads(meta.get("metadata"), "metadata"),
            request=loads(meta.get("request"), "request"),
        )


@dataclass(frozen=True)
class JobEvent:
    """A message of the ``fleet.events`` exchange (``job.completed`` / ``job.cancelled``)."""

    event: str
    job_id: str
    status: JobState
    total: int
    ok: int
    failed: Dict[str, str]
    skipped: Dict[str, str]
    at_ms: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JobEvent":
        return cls(
            event=str(_need(d, "event", "job event")),
            job_id=str(_need(d, "job_id", "job event")),
            status=JobState.parse(_need(d, "status", "job event")),
            total=_int(d.get("total")),
            ok=_int(d.get("ok")),
            failed=dict(d.get("failed") or {}),
            skipped=dict(d.get("skipped") or {}),
            at_ms=_int(d.get("at_ms")),
        )
