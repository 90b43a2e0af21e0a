//! Whether kuma-dp's DNS server answers (`Action::WatchProxyDns`): one UDP
//! query at a time to `--proxy-dns`, each bounded by [`TRY_TIMEOUT`],
//! retried every [`RETRY`] until the first answer, which goes to the
//! lifecycle (`Input::ProxyDnsAnswered`); the lifecycle bounds the whole
//! wait with `--proxy-ready-timeout`. The query is sent from meshinit's own
//! uid straight to kuma-dp's listener (not through the redirect rules),
//! which is what the app's redirected lookups reach.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::mesh::dns;

/// How long one query waits for its answer: the embedded proxy answers
/// from memory or relays upstream; a listener that is there answers well
/// within this (a late answer still counts on the next try).
pub(super) const TRY_TIMEOUT: Duration = Duration::from_millis(500);
/// The pause before the next try after a refusal (nothing listens yet: the
/// kernel answers at once with ICMP port unreachable).
pub(super) const RETRY: Duration = Duration::from_millis(100);

/// The kuma-dp start `generation` whose DNS answered.
pub(super) type Reading = u64;

pub(super) struct DnsWatch {
    tx: mpsc::UnboundedSender<Reading>,
    task: Option<JoinHandle<()>>,
}

impl DnsWatch {
    pub fn new(tx: mpsc::UnboundedSender<Reading>) -> DnsWatch {
        DnsWatch { tx, task: None }
    }

    /// Starts querying `addr` for kuma-dp's start `generation`, or stops
    /// (`None`).
    pub fn set(&mut self, watch: Option<(SocketAddr, u64)>) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let Some((addr, generation)) = watch else {
            return;
        };
        let tx = self.tx.clone();
        self.task = Some(tokio::task::spawn_local(async move {
            let mut socket = None;
            let mut id: u16 = 0;
            loop {
                id = id.wrapping_add(1);
                // One socket for the whole wait, so that a late answer to
                // an earlier try still counts; made again only if it failed.
                if socket.is_none() {
                    socket = connect(addr).await.map_err(|e| debug!(dns = %addr, error = %e, "cannot open a socket to kuma-dp's DNS")).ok();
                }
                if let Some(s) = &socket {
                    match ask(s, id).await {
                        Ok(()) => {
                            let _ = tx.send(generation);
                            return;
                        }
                        Err(e) => {
                            debug!(dns = %addr, error = %e, "kuma-dp's DNS did not answer yet")
                        }
                    }
                }
                tokio::time::sleep(RETRY).await;
            }
        }));
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// One query and its answer: `Ok` once any DNS response came back within
/// [`TRY_TIMEOUT`]. A refusal (nothing listens yet) is an error at once.
async fn ask(socket: &UdpSocket, id: u16) -> std::io::Result<()> {
    socket.send(&dns::query(id, dns::CHECK_NAME)).await?;
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + TRY_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if dns::is_response(&buf[..n]) {
            return Ok(());
        }
    }
}
