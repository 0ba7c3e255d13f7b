"""`FleetClient`: submit (AMQP or HTTP), wait (events, polling as the fallback), read results
(HTTP or Redis). One client per thread: pika's blocking connection is not thread-safe."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

from .errors import (
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
from ._events import FINAL_EVENTS as FINAL_EVENTS
from ._events import Events as _Events
from ._events import redact as _redact
from .models import JobEvent, JobResult, JobStatus, Submission

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
DEFAULT_HTTP_URL = "http://127.0.0.1:8080"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "fleet"
#: Namespace of job ids derived from idempotency keys over AMQP (see `submit_amqp`).
IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0c6a36-3f8e-4c1e-9a53-6f1f1d2f0a11")
# The fleet's one id grammar (common::ids): no ':' (the Redis key separator) and no '/'.
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _check_id(what: str, value: str) -> None:
    # The dispatcher's grammar: a message it cannot accept would go to the dead-letter queue
    # where the caller never hears of it, so refuse it here.
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or not set(value) <= _ID_CHARS:
        raise InvalidRequest(f"{what} {value!r} must be 1..128 of ASCII letters, digits, '-', '_', '.'")


def job_request(
    video: str,
    analyzers: Optional[Sequence[str]] = None,
    idempotency_key: Optional[str] = None,
    metadata: Optional[Any] = None,
) -> Dict[str, Any]:
    """The job request body (README "Wire contracts"), checked for what is certain to fail."""
    if not isinstance(video, str) or not video.strip():
        raise InvalidRequest("video must be a non-empty path or http(s) URL")
    body: Dict[str, Any] = {"v": 1, "video": video}
    if analyzers is not None:
        if isinstance(analyzers, str) or not all(isinstance(a, str) and a for a in analyzers):
            raise InvalidRequest("analyzers must be a list of analyzer names")
        body["analyzers"] = list(analyzers)
    if idempotency_key is not None:
        _check_id("idempotency_key", idempotency_key)
        body["idempotency_key"] = idempotency_key
    if metadata is not None:
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as e:
            raise InvalidRequest(f"metadata must be JSON-serializable: {e}") from None
        body["metadata"] = metadata
    return body


def _current_trace() -> Dict[str, str]:
    """The caller's W3C trace context, when OpenTelemetry is installed and a span is active."""
    try:
        from opentelemetry import propagate  # type: ignore[import-not-found]
    except ImportError:
        return {}
    carrier: Dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}


class FleetClient:
    """A connection to one fleet (one ``FLEET_PREFIX``).

    Give what you use: ``amqp_url`` to submit over AMQP and wait on events, ``http_url`` for the
    dispatcher's HTTP API, ``redis_url`` to read results straight from Redis. ``token`` is the
    dispatcher's ``FLEET_API_TOKEN``, when it has one."""

    def __init__(
        self,
        *,
        http_url: Optional[str] = None,
        amqp_url: Optional[str] = None,
        redis_url: Optional[str] = None,
        prefix: str = DEFAULT_PREFIX,
        token: Optional[str] = None,
        timeout: float = 10.0,
    ):
        if not (http_url or amqp_url or redis_url):
            raise ConfigurationError("give at least one of http_url, amqp_url, redis_url")
        self.http_url = http_url.rstrip("/") if http_url else None
        self.amqp_url = amqp_url
        self.redis_url = redis_url
        self.prefix = prefix
        self.token = token
        self.timeout = timeout
        self._conn: Any = None
        self._channel: Any = None
        self._redis: Any = None

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, **overrides: Any) -> "FleetClient":
        """A client configured like the fleet's own processes and CLI: ``FLEET_URL`` (the
        dispatcher), ``FLEET_AMQP_URL``, ``FLEET_REDIS_URL``, ``FLEET_PREFIX``,
        ``FLEET_API_TOKEN``, each with the fleet's default when unset."""
        import os

        e = os.environ if env is None else env
        args: Dict[str, Any] = dict(
            http_url=e.get("FLEET_URL") or DEFAULT_HTTP_URL,
            amqp_url=e.get("FLEET_AMQP_URL") or DEFAULT_AMQP_URL,
            redis_url=e.get("FLEET_REDIS_URL") or DEFAULT_REDIS_URL,
            prefix=e.get("FLEET_PREFIX") or DEFAULT_PREFIX,
            token=e.get("FLEET_API_TOKEN") or None,
        )
        args.update(overrides)
        return cls(**args)

    # ---- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Closes the AMQP and Redis connections (the client reopens them when used again)."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already gone: nothing to release
                pass
        r, self._redis = self._redis, None
        if r is not None:
            r.close()

    def __enter__(self) -> "FleetClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- submit ------------------------------------------------------------------------

    def submit(self, video: str, **kwargs: Any) -> Submission:
        """Submits over AMQP when ``amqp_url`` is set, else over HTTP. See `submit_amqp`."""
        if self.amqp_url:
            return self.submit_amqp(video, **kwargs)
        return self.submit_http(video, **kwargs)

    def submit_amqp(
        self,
        video: str,
        *,
        analyzers: Optional[Sequence[str]] = None,
        idempotency_key: Optional[str] = None,
        metadata: Optional[Any] = None,
        job_id: Optional[str] = None,
        traceparent: Optional[str] = None,
        tracestate: Optional[str] = None,
    ) -> Submission:
        """Publishes one job request to ``{prefix}.jobs`` and returns once RabbitMQ confirmed it
        stored the message. The AMQP ``message_id`` is the job id: ``job_id`` when given, else
        derived from ``idempotency_key`` (so a retry with the same key names the same job), else
        a new UUID. The dispatcher validates it later; a request it refuses goes to
        ``{prefix}.dlq`` with the reason (HTTP answers refusals at once: prefer it when you
        need to know). Raises `NotConfirmed` when the broker did not take the message."""
        import pika
        import pika.exceptions

        body = job_request(video, analyzers, idempotency_key, metadata)
        if job_id is None:
            job_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key) if idempotency_key else uuid.uuid4())
        _check_id("job_id", job_id)
        headers = _current_trace()
        if traceparent:
            headers = {"traceparent": traceparent}
            if tracestate:
                headers["tracestate"] = tracestate
        props = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=job_id,
            headers=headers or None,
        )
        payload = json.dumps(body).encode()
        for attempt in (1, 2):
            channel = self._amqp_channel()
            try:
                # mandatory: a missing queue (dispatcher never started, wrong prefix) comes back
                # as UnroutableError instead of vanishing.
                channel.basic_publish("", f"{self.prefix}.jobs", payload, props, mandatory=True)
                return Submission(job_id=job_id, created=True)
            except pika.exceptions.UnroutableError:
                raise FleetError(
                    f"queue {self.prefix}.jobs does not exist: start the dispatcher once (it declares"
                    " the queues) or check the prefix"
                ) from None
            except pika.exceptions.NackError:
                raise NotConfirmed("RabbitMQ refused the job request (nack): try again") from None
            except pika.exceptions.AMQPError as e:
                # A connection that died while idle: reconnect once; the message is identified
                # by its message_id, so a second publish cannot create a second job.
                self._drop_amqp()
                if attempt == 2:
                    raise NotConfirmed(f"RabbitMQ connection lost while publishing ({e!r}): try again") from None
        raise AssertionError("unreachable")

    def submit_http(
        self,
        video: str,
        *,
        analyzers: Optional[Sequence[str]] = None,
        idempotency_key: Optional[str] = None,
        metadata: Optional[Any] = None,
        traceparent: Optional[str] = None,
        tracestate: Optional[str] = None,
        job_id: Optional[str] = None,
    ) -> Submission:
        """``POST /v1/jobs``. Refusals come back at once as `InvalidRequest`."""
        if job_id is not None:
            raise ConfigurationError("the HTTP API picks job ids; use submit_amqp to choose one")
        body = job_request(video, analyzers, idempotency_key, metadata)
        headers = _current_trace()
        if traceparent:
            headers = {"traceparent": traceparent}
            if tracestate:
                headers["tracestate"] = tracestate
        answer = self._http("POST", "/v1/jobs", body=body, headers=headers)
        return Submission(job_id=str(answer["job_id"]), created=bool(answer.get("created", True)))

    # ---- read --------------------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        """Status and progress (HTTP when ``http_url`` is set, else Redis)."""
        if self.http_url:
            return JobStatus.from_dict(self._http("GET", f"/v1/jobs/{_quote(job_id)}", job_id=job_id))
        return self.result_from_redis(job_id).job

    def result(self, job_id: str) -> JobResult:
        """Every outcome so far (HTTP when ``http_url`` is set, else Redis)."""
        if self.http_url:
            return self.result_http(job_id)
        return self.result_from_redis(job_id)

    def result_http(self, job_id: str) -> JobResult:
        return JobResult.from_dict(self._http("GET", f"/v1/jobs/{_quote(job_id)}/result", job_id=job_id))

    def result_from_redis(self, job_id: str) -> JobResult:
        """Reads ``{prefix}:job:{id}`` and ``{prefix}:job:{id}:results`` directly."""
        import redis

        r = self._redis_client()
        key = f"{self.prefix}:job:{job_id}"
        try:
            with r.pipeline(transaction=True) as p:
                p.hgetall(key)
                p.hgetall(f"{key}:results")
                meta, results = p.execute()
        except redis.RedisError as e:
            raise Unavailable(f"Redis at {_redact(self.redis_url)}: {e}") from None
        if not meta:
            raise JobNotFound(job_id)
        return JobResult.from_redis(job_id, meta, results)

    def recent(self, limit: int = 20) -> List[JobStatus]:
        """The most recent jobs, newest first (``GET /v1/jobs``)."""
        answer = self._http("GET", f"/v1/jobs?limit={int(limit)}")
        return [JobStatus.from_dict(j) for j in answer.get("jobs", [])]

    def cancel(self, job_id: str) -> str:
        """Cancels a job (its queued tasks are dropped); returns its status afterwards."""
        return str(self._http("POST", f"/v1/jobs/{_quote(job_id)}/cancel", job_id=job_id)["status"])

    # ---- wait --------------------------------------------------------------------------

    def wait(
        self, job_id: str, timeout: float = 600.0, poll_interval: float = 2.0, intake_grace: float = 30.0
    ) -> JobResult:
        """Blocks until the job is completed or cancelled and returns its result.

        Listens on the ``{prefix}.events`` exchange when ``amqp_url`` is set (a private queue
        bound before the first status check, so no event slips between the two) and polls the
        status every ``poll_interval`` seconds as well: a missed event (broker restart) only
        costs one interval. Without ``amqp_url``, or when the broker fails, it polls only.
        A job submitted over AMQP exists only once the dispatcher took it from the intake
        queue: an unknown id is waited for ``intake_grace`` seconds before `JobNotFound`.
        Raises `WaitTimeout` (the job keeps running) or `JobNotFound`."""
        return self.wait_all([job_id], timeout=timeout, poll_interval=poll_interval, intake_grace=intake_grace)[job_id]

    def wait_all(
        self,
        job_ids: Iterable[str],
        timeout: float = 600.0,
        poll_interval: float = 2.0,
        intake_grace: float = 30.0,
    ) -> Dict[str, JobResult]:
        """`wait` for several jobs at once, over one event queue."""
        pending = list(dict.fromkeys(job_ids))
        started = time.monotonic()
        deadline = started + timeout
        done: Dict[str, JobResult] = {}
        listener = None
        if self.amqp_url:
            try:
                listener = self._event_listener()
            except Unavailable:
                pass  # the broker is down: polling alone still gets there
        last: Dict[str, Optional[str]] = {j: None for j in pending}
        try:
            while True:
                for j in [j for j in pending if j not in done]:
                    try:
                        res = self.result(j)
                    except JobNotFound:
                        if time.monotonic() - started > intake_grace:
                            raise
                        last[j] = "not found yet (in the intake queue?)"
                        continue
                    last[j] = res.status.value
                    if res.is_final:
                        done[j] = res
                if len(done) == len(pending):
                    return done
                left = deadline - time.monotonic()
                if left <= 0:
                    j = next(j for j in pending if j not in done)
                    raise WaitTimeout(j, timeout, last[j])
                pause = min(poll_interval, left)
                if listener is not None:
                    try:
                        # Returns early on events; the loop then re-reads the unfinished jobs.
                        listener.poll(pause, interesting=set(last))
                    except Unavailable:
                        listener.close()
                        listener = None  # polling alone from here on
                else:
                    time.sleep(pause)
        finally:
            if listener is not None:
                listener.close()

    def events(self, timeout: Optional[float] = None) -> Iterator[JobEvent]:
        """Every job event of the fleet from now on (at-least-once: dedupe on ``job_id``),
        until ``timeout`` seconds pass without one (forever when None). The event queue is
        bound when this returns, so a job submitted afterwards cannot slip by."""
        return self._stream(self._event_listener(), timeout)

    @staticmethod
    def _stream(listener: _Events, timeout: Optional[float]) -> Iterator[JobEvent]:
        try:
            while True:
                got = listener.poll(timeout if timeout is not None else 3600.0)
                if not got and timeout is not None:
                    return
                yield from got
        finally:
            listener.close()

    # ---- plumbing ----------------------------------------------------------------------

    def _amqp_channel(self) -> Any:
        import pika
        import pika.exceptions

        if self._channel is not None and self._channel.is_open:
            return self._channel
        if not self.amqp_url:
            raise ConfigurationError("no amqp_url: pass amqp_url= (or use submit_http)")
        self._drop_amqp()
        params = pika.URLParameters(self.amqp_url)
        params.socket_timeout = self.timeout
        params.blocked_connection_timeout = self.timeout
        params.client_properties = {"connection_name": "fleet-client (python)"}
        try:
            self._conn = pika.BlockingConnection(params)
            self._channel = self._conn.channel()
            self._channel.confirm_delivery()
        except (pika.exceptions.AMQPError, OSError) as e:
            self._drop_amqp()
            raise Unavailable(f"cannot reach RabbitMQ at {_redact(self.amqp_url)}: {e!r}") from None
        return self._channel

    def _drop_amqp(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: dropping it is the point
                pass

    def _event_listener(self) -> _Events:
        return _Events(self)

    def _redis_client(self) -> Any:
        import redis

        if self._redis is None:
            if not self.redis_url:
                raise ConfigurationError("no redis_url: pass redis_url= (or read over http_url)")
            self._redis = redis.Redis.from_url(
                self.redis_url, decode_responses=True, socket_timeout=self.timeout
            )
        return self._redis

    def _http(
        self,
        method: str,
        path: str,
        body: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        job_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        if not self.http_url:
            raise ConfigurationError("no http_url: pass http_url= (the dispatcher, e.g. http://127.0.0.1:8080)")
        h = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.http_url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise _http_error(e, job_id) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise Unavailable(f"cannot reach the dispatcher at {self.http_url}: {reason}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ProtocolError(f"{method} {path}: the dispatcher answered non-JSON") from None
        if not isinstance(answer, dict):
            raise ProtocolError(f"{method} {path}: expected a JSON object")
        return answer


def _http_error(e: "urllib.error.HTTPError", job_id: Optional[str]) -> FleetError:
    try:
        reason = json.loads(e.read()).get("error") or e.reason
    except Exception:  # not our JSON (a proxy's page): the status line says enough
        reason = e.reason
    if e.code == 401:
        return Unauthorized(f"the dispatcher wants its API token (FLEET_API_TOKEN): {reason}")
    if e.code == 404 and job_id is not None:
        return JobNotFound(job_id)
    if e.code in (400, 413, 422):
        return InvalidRequest(str(reason), status=e.code)
    if e.code in (502, 503, 504):
        return Unavailable(f"the dispatcher answered {e.code}: {reason}")
    return ProtocolError(f"the dispatcher answered {e.code}: {reason}")


def _quote(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id:
        raise InvalidRequest("job_id must be a non-empty string")
    return urllib.parse.quote(job_id, safe="")
