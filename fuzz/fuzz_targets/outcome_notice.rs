//! Outcome notices as the dispatcher takes them from `{p}.outcomes`: decoding never panics
//! and a decoded notice round-trips.
#![no_main]

use common::codec;
use common::message::OutcomeNotice;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(notice) = codec::decode::<OutcomeNotice>(data) {
        let _ = common::ids::check_id("job_id", &notice.job_id);
        let back: OutcomeNotice = codec::decode(&codec::encode(&notice).unwrap()).unwrap();
        assert_eq!(back, notice);
    }
});
