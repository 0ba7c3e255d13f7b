//! Job requests as the intake takes them (AMQP body or HTTP body): JSON, MessagePack, or
//! sniffed. Decoding never panics; a decoded request survives a MessagePack round trip; the
//! reason the intake would dead-letter with stays bounded.
#![no_main]

use common::codec::{self, JSON, MSGPACK};
use common::text::{MAX_REASON_BYTES, reason};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = match selector % 4 {
        0 => Some(JSON),
        1 => Some(MSGPACK),
        2 => None,
        _ => Some("text/plain"),
    };
    match codec::decode_job_request(content_type, body) {
        Ok(req) => {
            if let Some(key) = &req.idempotency_key {
                let _ = common::ids::check_id("idempotency_key", key);
            }
            let packed = codec::encode(&req).expect("a decoded request encodes");
            let back = codec::decode_job_request(Some(MSGPACK), &packed)
                .expect("an encoded request decodes");
            assert_eq!(back.video, req.video);
            assert_eq!(back.analyzers, req.analyzers);
            assert_eq!(back.idempotency_key, req.idempotency_key);
        }
        Err(e) => {
            let r = reason(&format!("malformed job request: {e}"));
            assert!(r.len() <= MAX_REASON_BYTES);
        }
    }
});
