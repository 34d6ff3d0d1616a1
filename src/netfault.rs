//! A TCP proxy on loopback that injects the faults object storage shows under load, for the
//! tests: per connection, a seeded share is answered `503 SlowDown` (S3's XML error body) or
//! `500 InternalError` without reaching the server, reset after a random number of bytes in
//! either direction (mid-request, mid-upload, mid-download), or stalled (read, never
//! answered) for a while; the rest are relayed untouched.
//!
//! Invariants:
//! - the fault of connection `n` depends only on the seed and `n`, so a failing run replays
//!   with the same seed (connections are numbered in the order they are accepted);
//! - a relayed byte is forwarded unchanged and in order; a reset connection forwards exactly
//!   the bytes before its cut, then closes both sides with a TCP reset;
//! - every connection is counted once under the fault it got ([`FaultCounts`]);
//! - while [`FaultProxy::hold`] is on, no byte moves on any connection, open or new (a network
//!   gone silent); bytes held are forwarded, in order, once it is off;
//! - it listens on 127.0.0.1 only and stops when dropped (the listener and its accept loop
//!   are `loopback_proxy`'s, shared with `netem`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::loopback_proxy::{Behaviour, Listener, connect_upstream};

/// Shares of connections (each 0..=1, summing to at most 1) and their parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Answered `503 Slow Down` with S3's XML body.
    pub slow_down: f64,
    /// Answered `500 Internal Error`.
    pub server_error: f64,
    /// Relayed, then reset after a random number of bytes (up to `reset_within`) one way.
    pub reset: f64,
    pub reset_within: u64,
    /// Read and never answered, for `stall_for`, then closed.
    pub stall: f64,
    pub stall_for: Duration,
    /// The seed of every choice.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            slow_down: 0.0,
            server_error: 0.0,
            reset: 0.0,
            reset_within: 256 << 10,
            stall: 0.0,
            stall_for: Duration::from_secs(5),
            seed: 1,
        }
    }
}

/// What the proxy did, by connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounts {
    pub connections: u64,
    pub slow_down: u64,
    pub server_error: u64,
    pub reset: u64,
    pub stall: u64,
    pub relayed: u64,
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections: {} answered 503 SlowDown, {} answered 500, {} reset mid-stream, {} stalled, {} relayed",
            self.connections,
            self.slow_down,
            self.server_error,
            self.reset,
            self.stall,
            self.relayed
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    slow_down: AtomicU64,
    server_error: AtomicU64,
    reset: AtomicU64,
    stall: AtomicU64,
    relayed: AtomicU64,
    hold: std::sync::atomic::AtomicBool,
    outage: std::sync::atomic::AtomicBool,
}

/// The fault one connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    SlowDown,
    ServerError,
    /// Cut after this many bytes from the client (`true`) or from the server.
    Reset {
        upstream: bool,
        after: u64,
    },
    Stall,
    None,
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    listener: Listener,
    counters: Arc<Counters>,
}

/// The proxy's behaviour on its connections: each gets the fault of its number (or, during an
/// outage, `503 SlowDown`), counted under it.
struct Injector {
    faults: Faults,
    counters: Arc<Counters>,
}

impl Behaviour for Injector {
    type Plan = Fault;

    fn accept(&self, n: u64) -> Fault {
        let c = &self.counters;
        c.connections.fetch_add(1, Ordering::SeqCst);
        if c.outage.load(Ordering::SeqCst) {
            Fault::SlowDown
        } else {
            self.faults.of(n)
        }
    }

    async fn serve(self: Arc<Self>, fault: Fault, client: TcpStream, upstream: SocketAddr) {
        let c = &self.counters;
        let counter = match fault {
            Fault::SlowDown => &c.slow_down,
            Fault::ServerError => &c.server_error,
            Fault::Reset { .. } => &c.reset,
            Fault::Stall => &c.stall,
            Fault::None => &c.relayed,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        serve(client, upstream, fault, self.faults.stall_for, c).await;
    }
}

fn mix(mut h: u64) -> u64 {
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Faults {
    /// The fault of connection `n`.
    fn of(&self, n: u64) -> Fault {
        let h = mix(self.seed ^ mix(n));
        let r = (h >> 11) as f64 / (1u64 << 53) as f64;
        let mut edge = self.slow_down;
        if r < edge {
            return Fault::SlowDown;
        }
        edge += self.server_error;
        if r < edge {
            return Fault::ServerError;
        }
        edge += self.reset;
        if r < edge {
            let h2 = mix(h);
            return Fault::Reset {
                upstream: h2 & 1 == 0,
                after: 1 + (h2 >> 1) % self.reset_within.max(1),
            };
        }
        edge += self.stall;
        if r < edge {
            return Fault::Stall;
        }
        Fault::None
    }
}

impl FaultProxy {
    /// Start a proxy to `upstream` that injects `faults`.
    pub async fn start(upstream: SocketAddr, faults: Faults) -> std::io::Result<Self> {
        let counters = Arc::new(Counters::default());
        let behaviour = Arc::new(Injector {
            faults,
            counters: Arc::clone(&counters),
        });
        let listener = Listener::start(upstream, behaviour).await?;
        Ok(Self { listener, counters })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.listener.url()
    }

    /// Stop (`true`) or resume every byte on every connection.
    pub fn hold(&self, on: bool) {
        self.counters.hold.store(on, Ordering::SeqCst);
    }

    /// Start (`true`) or end an outage: while it lasts every new connection is answered
    /// `503 SlowDown` and a relayed connection is cut when its client sends more (counted as
    /// a reset), so no request gets through, kept-alive connections included.
    pub fn outage(&self, on: bool) {
        self.counters.outage.store(on, Ordering::SeqCst);
    }

    /// What it did so far.
    pub fn counts(&self) -> FaultCounts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        FaultCounts {
            connections: get(&c.connections),
            slow_down: get(&c.slow_down),
            server_error: get(&c.server_error),
            reset: get(&c.reset),
            stall: get(&c.stall),
            relayed: get(&c.relayed),
        }
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    stall_for: Duration,
    c: &Counters,
) {
    let _ = client.set_nodelay(true);
    match fault {
        Fault::SlowDown => {
            answer(
                &mut client,
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            )
            .await
        }
        Fault::ServerError => {
            answer(
                &mut client,
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
            )
            .await
        }
        Fault::Stall => {
            // Take what the client sends, answer nothing.
            let mut buf = vec![0u8; 64 << 10];
            let _ = tokio::time::timeout(stall_for, async {
                while let Ok(n) = client.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                // The client gave up: wait out the stall anyway.
                std::future::pending::<()>().await
            })
            .await;
        }
        Fault::Reset {
            upstream: up,
            after,
        } => {
            if let Ok(server) = connect_upstream(upstream).await {
                // A zero linger makes the close a reset and never blocks (only a positive
                // linger waits for unsent data, which is why tokio deprecates the setter).
                #[allow(deprecated)]
                {
                    let _ = client.set_linger(Some(Duration::ZERO));
                    let _ = server.set_linger(Some(Duration::ZERO));
                }
                relay(client, server, Some((up, after)), c).await;
            }
        }
        Fault::None => {
            if let Ok(server) = connect_upstream(upstream).await {
                relay(client, server, None, c).await;
            }
        }
    }
}

/// Read the request head, answer an S3-style error and close.
async fn answer(client: &mut TcpStream, status: &str, code: &str, message: &str) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>tilecube-fault</RequestId></Error>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Relay both ways; with `cut`, stop after that many bytes one way (`true`: from the client)
/// and drop both sockets (reset, their linger being zero).
async fn relay(client: TcpStream, server: TcpStream, cut: Option<(bool, u64)>, c: &Counters) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (mut up, mut down) = (0u64, 0u64);
    let mut a = vec![0u8; 64 << 10];
    let mut b = vec![0u8; 64 << 10];
    loop {
        tokio::select! {
            r = cr.read(&mut a) => {
                let Ok(n) = r else { return };
                if n == 0 {
                    let _ = sw.shutdown().await;
                    // Carry on until the server is done too.
                    while let Ok(m) = sr.read(&mut b).await {
                        held(c).await;
                        if m == 0 || send(&mut cw, &b[..m], &mut down, cut.filter(|c| !c.0)).await {
                            return;
                        }
                    }
                    return;
                }
                held(c).await;
                if c.outage.load(Ordering::SeqCst) {
                    c.reset.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                if send(&mut sw, &a[..n], &mut up, cut.filter(|c| c.0)).await {
                    return;
                }
            }
            r = sr.read(&mut b) => {
                let Ok(n) = r else { return };
                if n == 0 {
                    let _ = cw.shutdown().await;
                    return;
                }
                held(c).await;
                if send(&mut cw, &b[..n], &mut down, cut.filter(|c| !c.0)).await {
                    return;
                }
            }
        }
    }
}

/// Wait while the proxy holds every byte.
async fn held(c: &Counters) {
    while c.hold.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Forward `bytes`, counting them in `sent`; with a cut at `after`, forward only up to it and
/// say the connection is to be reset (`true`).
async fn send(
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
    sent: &mut u64,
    cut: Option<(bool, u64)>,
) -> bool {
    let (take, stop) = match cut {
        Some((_, after)) if *sent + bytes.len() as u64 >= after => {
            ((after.saturating_sub(*sent)) as usize, true)
        }
        _ => (bytes.len(), false),
    };
    if to.write_all(&bytes[..take]).await.is_err() {
        return true;
    }
    *sent += take as u64;
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_their_shares_and_replay_with_the_seed() {
        let f = Faults {
            slow_down: 0.1,
            server_error: 0.05,
            reset: 0.1,
            stall: 0.05,
            seed: 7,
            ..Faults::default()
        };
        let of: Vec<Fault> = (0..20_000).map(|n| f.of(n)).collect();
        let share = |p: fn(&Fault) -> bool| of.iter().filter(|x| p(x)).count() as f64 / 20_000.0;
        assert!((share(|x| *x == Fault::SlowDown) - 0.1).abs() < 0.01);
        assert!((share(|x| *x == Fault::ServerError) - 0.05).abs() < 0.01);
        assert!((share(|x| matches!(x, Fault::Reset { .. })) - 0.1).abs() < 0.01);
        assert!((share(|x| *x == Fault::Stall) - 0.05).abs() < 0.01);
        assert_eq!(of, (0..20_000).map(|n| f.of(n)).collect::<Vec<_>>());
        let other = Faults { seed: 8, ..f };
        assert_ne!(of, (0..20_000).map(|n| other.of(n)).collect::<Vec<_>>());
    }
}
