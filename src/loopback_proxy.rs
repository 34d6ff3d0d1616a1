//! The listener the loopback proxies share (feature `loopback`): [`crate::netem`], which adds a
//! round trip and counts requests, and [`crate::netfault`], which injects faults. It binds a
//! free port on 127.0.0.1, accepts connections and hands each to the proxy's [`Behaviour`],
//! which decides what the connection gets and then serves it (relays it to the upstream
//! server its own way, or answers it itself).
//!
//! Invariants:
//! - it listens on 127.0.0.1 only, and stops accepting when dropped (connections already
//!   handed over run to their end);
//! - connections are numbered from 0 in the order they are accepted, and the behaviour
//!   decides each one's fate ([`Behaviour::accept`]) in that order, in the accept loop itself,
//!   before the next connection is accepted;
//! - each connection is served on a task of its own, so a slow one never holds up another;
//! - a connection to the upstream server ([`connect_upstream`]) sends small writes at once
//!   (no Nagle delay), as the client's side does once a behaviour takes it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// What a proxy does with the connections it accepts.
pub(crate) trait Behaviour: Send + Sync + 'static {
    /// What a connection gets, decided as it is accepted.
    type Plan: Send + 'static;

    /// Decide what connection `n` (the `n`th accepted, from 0) gets; called in the accept
    /// loop, in order, so it should be quick.
    fn accept(&self, n: u64) -> Self::Plan;

    /// Serve the connection from `client` as `plan` says, relaying to `upstream` if at all.
    fn serve(
        self: Arc<Self>,
        plan: Self::Plan,
        client: TcpStream,
        upstream: SocketAddr,
    ) -> impl Future<Output = ()> + Send;
}

/// A listener on loopback handing its connections to a [`Behaviour`]; dropping it stops it.
pub(crate) struct Listener {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Listen on a free port of 127.0.0.1 and serve every connection with `behaviour`,
    /// towards `upstream`.
    pub(crate) async fn start<B: Behaviour>(
        upstream: SocketAddr,
        behaviour: Arc<B>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                let plan = behaviour.accept(n);
                n += 1;
                tokio::spawn(Arc::clone(&behaviour).serve(plan, client, upstream));
            }
        });
        Ok(Self { addr, task })
    }

    /// The address clients connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection to the upstream server, without Nagle's delay.
pub(crate) async fn connect_upstream(upstream: SocketAddr) -> std::io::Result<TcpStream> {
    let server = TcpStream::connect(upstream).await?;
    let _ = server.set_nodelay(true);
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each connection with its number and what it was told upstream is.
    struct Numbered {
        seen: Mutex<Vec<u64>>,
    }

    impl Behaviour for Numbered {
        type Plan = u64;

        fn accept(&self, n: u64) -> u64 {
            self.seen.lock().unwrap().push(n);
            n
        }

        async fn serve(self: Arc<Self>, n: u64, mut client: TcpStream, upstream: SocketAddr) {
            let _ = client.write_all(format!("{n} {upstream}").as_bytes()).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_numbered_in_order_and_served_by_the_behaviour() {
        let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let behaviour = Arc::new(Numbered {
            seen: Mutex::new(vec![]),
        });
        let listener = Listener::start(upstream, Arc::clone(&behaviour))
            .await
            .unwrap();
        assert!(listener.addr().ip().is_loopback());
        assert_eq!(listener.url(), format!("http://{}", listener.addr()));
        for n in 0..3 {
            let mut c = TcpStream::connect(listener.addr()).await.unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, format!("{n} 127.0.0.1:9"));
        }
        assert_eq!(*behaviour.seen.lock().unwrap(), vec![0, 1, 2]);
        let addr = listener.addr();
        drop(listener);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "a dropped listener accepts nothing"
        );
    }
}
