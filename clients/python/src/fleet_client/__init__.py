"""Python client of the Analyzer Fleet.

    from fleet_client import FleetClient
    fleet = FleetClient(amqp_url="amqp://guest:guest@127.0.0.1:5672/%2f",
                        http_url="http://127.0.0.1:8080")
    sub = fleet.submit("https://cdn.example.com/v/123.mp4", analyzers=["cut_analysis"])
    result = fleet.wait(sub.job_id, timeout=600)
    print(result.value("cut_analysis"))

Layout: `FleetClient` (submit over AMQP or HTTP, wait on `fleet.events` with polling as the
fallback, results over HTTP or from Redis), typed results in `models`, exceptions in `errors`.
"""

from ._client import DEFAULT_AMQP_URL, DEFAULT_HTTP_URL, DEFAULT_PREFIX, DEFAULT_REDIS_URL, FleetClient, job_request
from .errors import (
    AnalyzerFailed,
    ConfigurationError,
    FleetError,
    InvalidRequest,
    JobNotFound,
    NotConfirmed,
    ProtocolError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from .models import AnalyzerOutcome, JobEvent, JobResult, JobState, JobStatus, OutcomeStatus, Progress, StageProgress, Submission

__all__ = [
    "DEFAULT_AMQP_URL",
    "DEFAULT_HTTP_URL",
    "DEFAULT_PREFIX",
    "DEFAULT_REDIS_URL",
    "AnalyzerFailed",
    "AnalyzerOutcome",
    "ConfigurationError",
    "FleetClient",
    "FleetError",
    "InvalidRequest",
    "JobEvent",
    "JobNotFound",
    "JobResult",
    "JobState",
    "JobStatus",
    "NotConfirmed",
    "OutcomeStatus",
    "Progress",
    "ProtocolError",
    "StageProgress",
    "Submission",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "job_request",
]
