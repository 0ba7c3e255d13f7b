//! A counting TCP forwarder in front of Redis: the fleet under test talks to Redis through
//! it, so its traffic is measured apart from everything else on a shared server (INFO's
//! counters are server-wide). It counts bytes each way and parses the RESP requests to
//! count commands by name; a pipeline of k commands counts k.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Counts {
    to_redis: AtomicU64,
    from_redis: AtomicU64,
    commands: Mutex<BTreeMap<String, u64>>,
}

/// What crossed the tap between two snapshots.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Traffic {
    pub to_redis: u64,
    pub from_redis: u64,
    pub commands: BTreeMap<String, u64>,
}

impl Traffic {
    pub fn total_commands(&self) -> u64 {
        self.commands.values().sum()
    }

    pub fn since(&self, before: &Traffic) -> Traffic {
        Traffic {
            to_redis: self.to_redis - before.to_redis,
            from_redis: self.from_redis - before.from_redis,
            commands: self
                .commands
                .iter()
                .map(|(k, v)| (k.clone(), v - before.commands.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect(),
        }
    }
}

pub struct RedisTap {
    /// The URL to give the fleet instead of Redis' own.
    pub url: String,
    counts: Arc<Counts>,
    accept: tokio::task::JoinHandle<()>,
}

impl RedisTap {
    /// Listens on a free loopback port and forwards every connection to the Redis of `url`.
    pub async fn start(url: &str) -> anyhow::Result<RedisTap> {
        let client = redis::Client::open(url)?;
        let (host, port) = match client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
            other => anyhow::bail!("the Redis tap forwards plain TCP only, not {other:?}"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?.to_string();
        let with_port = url.replacen(&format!("{host}:{port}"), &local, 1);
        let tapped = if with_port != url {
            with_port
        } else {
            url.replacen(&host, &local, 1)
        };
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let target = format!("{host}:{port}");
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (c, target) = (c.clone(), target.clone());
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        forward(inbound, outbound, c).await;
                    }
                });
            }
        });
        Ok(RedisTap {
            url: tapped,
            counts,
            accept,
        })
    }

    pub fn snapshot(&self) -> Traffic {
        Traffic {
            to_redis: self.counts.to_redis.load(Ordering::Relaxed),
            from_redis: self.counts.from_redis.load(Ordering::Relaxed),
            commands: self.counts.commands.lock().expect("tap counts").clone(),
        }
    }
}

impl Drop for RedisTap {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(inbound: TcpStream, outbound: TcpStream, counts: Arc<Counts>) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut cr, mut cw) = inbound.into_split();
    let (mut rr, mut rw) = outbound.into_split();
    let up_counts = counts.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            up_counts.to_redis.fetch_add(n as u64, Ordering::Relaxed);
            pending.extend_from_slice(&buf[..n]);
            let (names, used) = parse_requests(&pending);
            pending.drain(..used);
            if !names.is_empty() {
                let mut m = up_counts.commands.lock().expect("tap counts");
                for name in names {
                    *m.entry(name).or_default() += 1;
                }
            }
            if rw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = rw.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            counts.from_redis.fetch_add(n as u64, Ordering::Relaxed);
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// The names (upper case) of the complete RESP requests at the start of `buf`, and how many
/// bytes they took. An incomplete request is left for the next read.
fn parse_requests(buf: &[u8]) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut at = 0;
    while let Some((name, len)) = parse_request(&buf[at..]) {
        names.push(name);
        at += len;
    }
    (names, at)
}

fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let end = buf[from..].windows(2).position(|w| w == b"\r\n")? + from;
    Some((&buf[from..end], end + 2))
}

fn number(bytes: &[u8]) -> Option<usize> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// One request: an array of bulk strings (what every client library sends).
fn parse_request(buf: &[u8]) -> Option<(String, usize)> {
    let (head, mut at) = line(buf, 0)?;
    let count = number(head.strip_prefix(b"*")?)?;
    let mut name = String::new();
    for i in 0..count {
        let (len, next) = line(buf, at)?;
        let len = number(len.strip_prefix(b"$")?)?;
        let end = next + len + 2;
        if buf.len() < end {
            return None;
        }
        if i == 0 {
            name = String::from_utf8_lossy(&buf[next..next + len]).to_ascii_uppercase();
        }
        at = end;
    }
    Some((name, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_across_reads() {
        let one = b"*3\r\n$4\r\nhget\r\n$3\r\nkey\r\n$5\r\nfield\r\n";
        let two = b"*2\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n";
        let mut all = one.to_vec();
        all.extend_from_slice(two);
        let (names, used) = parse_requests(&all);
        assert_eq!(names, ["HGET", "EXPIRE"]);
        assert_eq!(used, all.len());
        let (names, used) = parse_requests(&all[..all.len() - 3]);
        assert_eq!((names, used), (vec!["HGET".to_string()], one.len()));
    }
}
