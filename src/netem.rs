//! A TCP proxy on loopback that adds a round trip and counts HTTP requests: how the bench
//! and the tests put a local server (moto, nginx) "far away", as a cloud region is from a
//! laptop, and see how many requests an operation makes.
//!
//! Invariants:
//! - every byte is forwarded unchanged, in order, `delay` after it arrived (half the added
//!   round trip each way); latency is added, bandwidth is not limited, and the bytes in
//!   flight are bounded by a bounded queue per direction;
//! - requests are counted by parsing the client's side as HTTP/1.1 (request heads, then
//!   `Content-Length` or chunked bodies); a connection whose stream cannot be parsed stops
//!   being counted (and is reported by [`LatencyProxy::unparsed`]) but is still forwarded;
//! - it listens on 127.0.0.1 only and stops when dropped (the listener and its accept loop
//!   are `loopback_proxy`'s, shared with `netfault`);
//! - with [`LatencyProxy::cut_responses`], the next connections that carry that many bytes of
//!   answers are closed there, mid-response, as a failing network or server does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::loopback_proxy::{Behaviour, Listener, connect_upstream};

/// Counters of a proxy.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    connections: AtomicU64,
    unparsed: AtomicU64,
    /// Connections still to be cut, and after how many bytes of answers.
    cuts_left: AtomicU64,
    cut_after: AtomicU64,
}

/// A running proxy; dropping it stops it.
pub struct LatencyProxy {
    listener: Listener,
    counters: Arc<Counters>,
}

/// The proxy's behaviour on its connections: each is counted and relayed, `one_way` late
/// each way.
struct Latency {
    one_way: Duration,
    counters: Arc<Counters>,
}

impl Behaviour for Latency {
    type Plan = ();

    fn accept(&self, _n: u64) {
        self.counters.connections.fetch_add(1, Ordering::SeqCst);
    }

    async fn serve(self: Arc<Self>, _plan: (), client: TcpStream, upstream: SocketAddr) {
        if let Ok(server) = connect_upstream(upstream).await {
            let _ = client.set_nodelay(true);
            relay(client, server, self.one_way, Arc::clone(&self.counters)).await;
        }
    }
}

impl LatencyProxy {
    /// Start a proxy to `upstream` that adds `round_trip` to every exchange.
    pub async fn start(upstream: SocketAddr, round_trip: Duration) -> std::io::Result<Self> {
        let counters = Arc::new(Counters::default());
        let behaviour = Arc::new(Latency {
            one_way: round_trip / 2,
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

    /// HTTP requests seen since the start (or the last [`Self::reset`]).
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted since the start (or the last reset).
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Connections whose requests could not be parsed (and so were not all counted).
    pub fn unparsed(&self) -> u64 {
        self.counters.unparsed.load(Ordering::SeqCst)
    }

    /// Close the next `times` connections once each has carried `bytes` bytes of answers
    /// (mid-response, without a word), then forward faithfully again.
    pub fn cut_responses(&self, bytes: u64, times: u64) {
        self.counters.cut_after.store(bytes, Ordering::SeqCst);
        self.counters.cuts_left.store(times, Ordering::SeqCst);
    }

    /// Connections cut so far are those asked for less those left.
    pub fn cuts_left(&self) -> u64 {
        self.counters.cuts_left.load(Ordering::SeqCst)
    }

    /// Set the counters to zero.
    pub fn reset(&self) {
        self.counters.requests.store(0, Ordering::SeqCst);
        self.counters.connections.store(0, Ordering::SeqCst);
        self.counters.unparsed.store(0, Ordering::SeqCst);
    }
}

/// Forward both ways until either side closes.
async fn relay(client: TcpStream, server: TcpStream, delay: Duration, counters: Arc<Counters>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pipe(cr, sw, delay, Some(Arc::clone(&counters)), false);
    let down = pipe(sr, cw, delay, Some(counters), true);
    let _ = tokio::join!(up, down);
}

/// One direction: read, hold each piece `delay`, write. The client's side counts requests;
/// the server's side is cut when a cut is asked for.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    counters: Option<Arc<Counters>>,
    answers: bool,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader = async move {
        let mut parser = RequestParser::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut carried = 0u64;
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if answers && let Some(c) = &counters {
                let after = c.cut_after.load(Ordering::SeqCst);
                if after > 0 && carried + n as u64 >= after {
                    let taken = c
                        .cuts_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                        .is_ok();
                    if taken {
                        // Forward up to the cut, then close: the client sees a short answer.
                        let keep = after.saturating_sub(carried) as usize;
                        let _ = tx.send((Instant::now(), buf[..keep].to_vec())).await;
                        break;
                    }
                }
                carried += n as u64;
            }
            if !answers && let Some(c) = &counters {
                let was_broken = parser.is_broken();
                let seen = parser.feed(&buf[..n]);
                c.requests.fetch_add(seen, Ordering::SeqCst);
                if !was_broken && parser.is_broken() {
                    c.unparsed.fetch_add(1, Ordering::SeqCst);
                }
            }
            if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at + delay).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Where the parser of a client stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ParseState {
    /// Reading a request head (bytes so far).
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line of a chunked body.
    ChunkSize(Vec<u8>),
    /// Skipping a chunk's data and its CRLF.
    ChunkData(u64),
    /// Reading trailer lines after the last chunk, until an empty line.
    Trailer(Vec<u8>),
    /// The stream is not HTTP/1.1 as understood here.
    Broken,
}

/// Counts HTTP/1.1 requests in a client's byte stream, fed piece by piece.
#[derive(Debug)]
struct RequestParser {
    state: ParseState,
}

impl Default for RequestParser {
    fn default() -> Self {
        Self {
            state: ParseState::Head(Vec::new()),
        }
    }
}

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

impl RequestParser {
    fn is_broken(&self) -> bool {
        self.state == ParseState::Broken
    }

    /// Feed bytes; returns the number of request heads completed in them.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut seen = 0;
        while !bytes.is_empty() {
            match &mut self.state {
                ParseState::Broken => return seen,
                ParseState::Head(head) => {
                    let before = head.len();
                    head.extend_from_slice(bytes);
                    let Some(end) = find(head, b"\r\n\r\n") else {
                        if head.len() > MAX_HEAD {
                            self.state = ParseState::Broken;
                        }
                        return seen;
                    };
                    let used = end + 4 - before;
                    bytes = &bytes[used..];
                    let Some(next) = body_of(&head[..end]) else {
                        self.state = ParseState::Broken;
                        return seen;
                    };
                    seen += 1;
                    self.state = next;
                }
                ParseState::Body(left) => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    bytes = &bytes[take as usize..];
                    if *left == 0 {
                        self.state = ParseState::Head(Vec::new());
                    }
                }
                ParseState::ChunkSize(line) => {
                    let before = line.len();
                    line.extend_from_slice(bytes);
                    let Some(end) = find(line, b"\r\n") else {
                        if line.len() > 1024 {
                            self.state = ParseState::Broken;
                        }
                        return seen;
                    };
                    bytes = &bytes[end + 2 - before..];
                    let text = String::from_utf8_lossy(&line[..end]);
                    let hex = text.split(';').next().unwrap_or("").trim();
                    self.state = match u64::from_str_radix(hex, 16) {
                        Ok(0) => ParseState::Trailer(Vec::new()),
                        Ok(n) => ParseState::ChunkData(n + 2),
                        Err(_) => ParseState::Broken,
                    };
                }
                ParseState::ChunkData(left) => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    bytes = &bytes[take as usize..];
                    if *left == 0 {
                        self.state = ParseState::ChunkSize(Vec::new());
                    }
                }
                ParseState::Trailer(line) => {
                    let before = line.len();
                    line.extend_from_slice(bytes);
                    let Some(end) = find(line, b"\r\n") else {
                        return seen;
                    };
                    bytes = &bytes[end + 2 - before..];
                    self.state = if end == 0 {
                        ParseState::Head(Vec::new())
                    } else {
                        ParseState::Trailer(Vec::new())
                    };
                }
            }
        }
        seen
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What follows a request head: its body, by `Transfer-Encoding` or `Content-Length`.
fn body_of(head: &[u8]) -> Option<ParseState> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let request = lines.next()?;
    if !request.ends_with("HTTP/1.1") && !request.ends_with("HTTP/1.0") {
        return None;
    }
    let mut length = 0u64;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            return Some(ParseState::ChunkSize(Vec::new()));
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        }
    }
    Some(if length == 0 {
        ParseState::Head(Vec::new())
    } else {
        ParseState::Body(length)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn requests_are_counted_across_pieces_bodies_and_chunks() {
        let stream = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
PUT /b HTTP/1.1\r\nContent-Length: 10\r\n\r\nGET / HTTP\
PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n\
HEAD /d HTTP/1.1\r\n\r\n";
        for piece in [1, 3, 7, 64, stream.len()] {
            let mut p = RequestParser::default();
            let n: u64 = stream.chunks(piece).map(|c| p.feed(c)).sum();
            assert_eq!(n, 4, "pieces of {piece}");
            assert!(!p.is_broken());
        }
    }

    #[test]
    fn a_stream_that_is_not_http_stops_counting() {
        let mut p = RequestParser::default();
        assert_eq!(p.feed(b"\x16\x03\x01 tls hello\r\n\r\n"), 0);
        assert!(p.is_broken());
        assert_eq!(p.feed(b"GET / HTTP/1.1\r\n\r\n"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_proxy_adds_its_round_trip_and_counts() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = upstream.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = LatencyProxy::start(up_addr, Duration::from_millis(100))
            .await
            .unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        for _ in 0..2 {
            let t = std::time::Instant::now();
            c.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0);
            let rtt = t.elapsed();
            assert!(rtt >= Duration::from_millis(100), "{rtt:?}");
            assert!(rtt < Duration::from_millis(1000), "{rtt:?}");
        }
        assert_eq!(proxy.requests(), 2);
        assert_eq!(proxy.connections(), 1);
        proxy.reset();
        assert_eq!(proxy.requests(), 0);

        // A cut: the next connection's answer stops after 20 bytes and it closes.
        proxy.cut_responses(20, 1);
        let mut c2 = TcpStream::connect(proxy.addr()).await.unwrap();
        c2.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut got = vec![];
        c2.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\nCon", "cut after 20 bytes");
        assert_eq!(proxy.cuts_left(), 0);
    }
}
