"""Exceptions of the fleet client. Every one says what went wrong and what to do about it.

`FleetError` is the base; `retryable` tells a pipeline whether trying again later can help.
"""

from __future__ import annotations

from typing import Optional


class FleetError(Exception):
    """Base class of everything this client raises."""

    #: Trying the same call again later may succeed (an outage, an overloaded fleet).
    retryable: bool = False


class ConfigurationError(FleetError):
    """The client lacks what a call needs (e.g. no ``http_url`` for an HTTP call)."""


class Unavailable(FleetError):
    """The dispatcher, RabbitMQ or Redis could not be reached or asked to try again."""

    retryable = True


class NotConfirmed(Unavailable):
    """RabbitMQ did not confirm that it stored the job request: it may not have been queued."""


class Unauthorized(FleetError):
    """The dispatcher wants ``Authorization: Bearer <FLEET_API_TOKEN>``: pass ``token=``."""


class InvalidRequest(FleetError):
    """The fleet refused the request as it is: it will never succeed unchanged."""

    def __init__(self, reason: str, status: Optional[int] = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class JobNotFound(FleetError):
    """No job with this id: never submitted under this prefix, or expired (result TTL)."""

    def __init__(self, job_id: str):
        super().__init__(f"no job {job_id!r} (unknown, expired, or another FLEET_PREFIX)")
        self.job_id = job_id


class WaitTimeout(FleetError):
    """A job did not reach a final status in time; it is still running in the fleet."""

    retryable = True

    def __init__(self, job_id: str, timeout: float, last_status: Optional[str]):
        super().__init__(
            f"job {job_id} not final after {timeout:g} s (last status: {last_status or 'unknown'});"
            " it keeps running: wait again or read its result later"
        )
        self.job_id = job_id
        self.timeout = timeout
        self.last_status = last_status


class AnalyzerFailed(FleetError):
    """An analyzer of a finished job has no usable result (it failed or was skipped)."""

    def __init__(self, job_id: str, analyzer: str, status: str, error: Optional[str]):
        super().__init__(f"{analyzer} of job {job_id} {status}: {error or 'no reason given'}")
        self.job_id = job_id
        self.analyzer = analyzer
        self.status = status
        self.error = error


class ProtocolError(FleetError):
    """The fleet answered something this client does not understand (version mismatch?)."""
