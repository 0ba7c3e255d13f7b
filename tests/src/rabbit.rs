//! A RabbitMQ node of a test's own, on free ports, for settings the shared broker must not
//! have (a short `consumer_timeout`). It shares the host's epmd and Erlang cookie, keeps its
//! files in a temporary directory, and is shut down when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct RabbitNode {
    pub port: u16,
    node: String,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RabbitNode {
    /// Starts a node whose `consumer_timeout` is `consumer_timeout`, checked every `tick`
    /// (`channel_tick_interval`, 60 s by default on 3.10: the broker looks at unacked
    /// deliveries only that often). Waits until it takes AMQP connections.
    pub async fn start(consumer_timeout: Duration, tick: Duration) -> RabbitNode {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let node = format!("t{id}@localhost");
        let dir = std::env::temp_dir().join(format!("rabbit-{id}"));
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        let port = free_port();
        let dist = free_port();
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write(
            "rabbitmq.conf",
            format!(
                "listeners.tcp.default = 127.0.0.1:{port}\ndisk_free_limit.absolute = 50MB\nconsumer_timeout = {}\n",
                consumer_timeout.as_millis()
            ),
        );
        write(
            "advanced.config",
            format!(
                "[{{rabbit, [{{channel_tick_interval, {}}}]}}].\n",
                tick.as_millis()
            ),
        );
        write("enabled_plugins", "[].\n".into());
        write("rabbitmq-env.conf", String::new());
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let env: Vec<(String, String)> = vec![
            ("RABBITMQ_NODENAME".into(), node.clone()),
            ("RABBITMQ_NODE_PORT".into(), port.to_string()),
            ("RABBITMQ_DIST_PORT".into(), dist.to_string()),
            ("RABBITMQ_MNESIA_BASE".into(), path("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), path("log")),
            ("RABBITMQ_CONFIG_FILE".into(), path("rabbitmq.conf")),
            (
                "RABBITMQ_ADVANCED_CONFIG_FILE".into(),
                path("advanced.config"),
            ),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE".into(),
                path("enabled_plugins"),
            ),
            ("RABBITMQ_CONF_ENV_FILE".into(), path("rabbitmq-env.conf")),
            ("RABBITMQ_PID_FILE".into(), path("pid")),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
        ];
        // Run as root, rabbitmq-server becomes the rabbitmq user: its files must be that user's.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status();
        Command::new("rabbitmq-server")
            .arg("-detached")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("rabbitmq-server (the Debian package) on PATH");
        let rabbit = RabbitNode {
            port,
            node,
            dir,
            env,
        };
        let url = rabbit.amqp_url();
        crate::eventually(
            Duration::from_secs(120),
            "a RabbitMQ node of the test's own",
            || {
                let url = url.clone();
                async move {
                    let c =
                        lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                            .await
                            .ok()?;
                    let _ = c.close(200, "ready".into()).await;
                    Some(())
                }
            },
        )
        .await;
        rabbit
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "shutdown"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
