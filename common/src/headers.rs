//! The AMQP header vocabulary: the names the fleet reads and writes in message headers, and
//! how a header is read whoever wrote it. A leaf: `broker` (dead-letter properties) and
//! `telemetry` (trace context) both build on it, neither on the other's internals.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Why the fleet dead-lettered a message itself (bounded, see [`crate::text::reason`]).
pub const REASON_HEADER: &str = "x-fleet-reason";
/// Set (to `true`) on a dead-lettered message whose original headers were left out.
pub const HEADERS_DROPPED_HEADER: &str = "x-fleet-headers-dropped";
/// RabbitMQ's: the queue a message was first dead-lettered from.
pub const FIRST_DEATH_QUEUE_HEADER: &str = "x-first-death-queue";
/// RabbitMQ's (quorum queues): how often the message was delivered before.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// Reads a header as a string whether the sender put it as a string or as bytes (Python
/// clients do both).
pub fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        _ => None,
    }
}

pub fn set_header(headers: &mut FieldTable, name: &str, value: &str) {
    headers.insert(
        ShortString::from(name),
        AMQPValue::LongString(LongString::from(value)),
    );
}

/// How often RabbitMQ delivered this message before (quorum queues set `x-delivery-count`).
pub fn delivery_count(props: &BasicProperties) -> u32 {
    let Some(h) = props.headers().as_ref() else {
        return 0;
    };
    match h.inner().get(DELIVERY_COUNT_HEADER) {
        Some(AMQPValue::LongLongInt(n)) => *n as u32,
        Some(AMQPValue::LongInt(n)) => *n as u32,
        Some(AMQPValue::ShortInt(n)) => *n as u32,
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::ShortShortInt(n)) => *n as u32,
        Some(AMQPValue::ShortShortUInt(n)) => *n as u32,
        Some(AMQPValue::ShortUInt(n)) => *n as u32,
        _ => 0,
    }
}
