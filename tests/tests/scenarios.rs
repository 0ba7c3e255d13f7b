//! The fleet's behaviour end to end, against the real RabbitMQ and Redis. Each scenario runs
//! under its own queue/key prefix, so they run in parallel.

mod scenarios {
    mod cli;
    mod concurrency;
    mod corrupt;
    mod crashes;
    mod deadline;
    mod failures;
    mod full_job;
    mod intake;
    mod outages;
    mod real_media;
    mod registration;
    mod security;
    mod soak;
    mod storage;
}
