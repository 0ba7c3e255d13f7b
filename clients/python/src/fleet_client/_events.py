"""The event side of the client: a private queue bound to the fleet's final job events, on
its own connection (pika's blocking connection serves one consumer loop at a time)."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any, List, Optional

from .errors import FleetError, ProtocolError, Unavailable
from .models import JobEvent

#: Routing keys of the events that end a job (common::topology in the fleet).
FINAL_EVENTS = ("job.completed", "job.cancelled")


def redact(url: Optional[str]) -> str:
    if not url:
        return "?"
    p = urllib.parse.urlsplit(url)
    if p.password:
        netloc = f"{p.username}:***@{p.hostname}" + (f":{p.port}" if p.port else "")
        return urllib.parse.urlunsplit(p._replace(netloc=netloc))
    return url


class Events:
    """A private, exclusive queue bound to the final job events, on its own connection."""

    def __init__(self, client: Any):
        import pika
        import pika.exceptions

        self._pika = pika
        params = pika.URLParameters(client.amqp_url)
        params.socket_timeout = client.timeout
        params.client_properties = {"connection_name": "fleet-client events (python)"}
        try:
            self._conn = pika.BlockingConnection(params)
            ch = self._conn.channel()
            q = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
            for key in FINAL_EVENTS:
                ch.queue_bind(q, f"{client.prefix}.events", routing_key=key)
        except pika.exceptions.ChannelClosedByBroker as e:
            self.close()
            raise FleetError(
                f"exchange {client.prefix}.events does not exist: start the dispatcher once or check the prefix ({e.reply_text})"
            ) from None
        except (pika.exceptions.AMQPError, OSError) as e:
            self.close()
            raise Unavailable(f"cannot reach RabbitMQ at {redact(client.amqp_url)}: {e!r}") from None
        self._stream = ch.consume(q, auto_ack=True, inactivity_timeout=0.25)

    def poll(self, seconds: float, interesting: Optional[set] = None) -> List[JobEvent]:
        """The events that arrive within ``seconds``; returns early once one arrived (one
        about a job in ``interesting``, when given) and the stream went quiet."""
        end = time.monotonic() + seconds
        got: List[JobEvent] = []
        try:
            for method, _props, body in self._stream:
                if method is not None:
                    try:
                        got.append(JobEvent.from_dict(json.loads(body)))
                    except (ValueError, ProtocolError):
                        pass  # not an event this client understands: the status poll covers it
                elif any(interesting is None or e.job_id in interesting for e in got):
                    return got
                if time.monotonic() >= end:
                    return got
        except self._pika.exceptions.AMQPError as e:
            raise Unavailable(f"event stream lost: {e!r}") from None
        return got

    def close(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing more to do
                pass
