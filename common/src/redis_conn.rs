//! The fleet's Redis connection: redis-rs's `ConnectionManager` (it reconnects by itself)
//! with every command bounded, so that nothing waits long behind a Redis that is away.
//!
//! The manager alone does not bound a command: a command issued while it reconnects waits
//! for the whole reconnect (six attempts with growing pauses by default, 6–12 s), and one on
//! a connection that went silent waits for the response timeout. Here each command, the
//! wait for a connection included, fails after [`COMMAND_WITHIN`] with a timeout error that
//! says so; callers treat it like any other transient Redis error (the API answers 503,
//! workers retry). The reconnect the manager started goes on in the background.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::backoff;

/// The longest any one Redis command may take, waiting for a connection included. Redis
/// answers the fleet's commands in well under a millisecond; this only bounds an outage.
pub const COMMAND_WITHIN: Duration = Duration::from_secs(2);
/// The longest one connection attempt may take (a silent host, a full accept queue).
const CONNECT_WITHIN: Duration = Duration::from_secs(1);
/// Attempts per reconnect after the first; callers bring the next reconnect on.
const RECONNECT_RETRIES: usize = 2;

#[derive(Clone)]
pub struct Bounded {
    inner: ConnectionManager,
    within: Duration,
}

impl Bounded {
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_WITHIN))
            // Later than ours: only frees the connection's slot of a command we gave up on.
            .set_response_timeout(Some(COMMAND_WITHIN * 2))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(backoff::RECONNECT.min_before_jitter())
            .set_max_delay(backoff::RECONNECT.max_before_jitter());
        let inner = ConnectionManager::new_with_config(client, cfg).await?;
        Ok(Self {
            inner,
            within: COMMAND_WITHIN,
        })
    }
}

fn too_slow(within: Duration) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "Redis did not answer within {} ms (down, unreachable or overloaded)",
            within.as_millis()
        ),
    ))
}

impl ConnectionLike for Bounded {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let within = self.within;
        Box::pin(async move {
            tokio::time::timeout(within, self.inner.req_packed_command(cmd))
                .await
                .map_err(|_| too_slow(within))?
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let within = self.within;
        Box::pin(async move {
            tokio::time::timeout(
                within,
                self.inner.req_packed_commands(pipeline, offset, count),
            )
            .await
            .map_err(|_| too_slow(within))?
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
