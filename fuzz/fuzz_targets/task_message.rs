//! Task messages as a worker takes them from a stage queue: decoding never panics, a decoded
//! task round-trips, and the id check holds whatever the fields are.
#![no_main]

use common::codec;
use common::message::TaskMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(task) = codec::decode::<TaskMessage>(data) {
        let ok = common::ids::check_id("job_id", &task.job_id).is_ok();
        assert_eq!(ok, common::ids::is_valid_id(&task.job_id));
        if ok {
            assert!(!task.job_id.contains(':') && !task.job_id.contains('/'));
        }
        let back: TaskMessage = codec::decode(&codec::encode(&task).unwrap()).unwrap();
        assert_eq!(back, task);
    }
});
