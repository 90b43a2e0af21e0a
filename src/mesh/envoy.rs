//! Envoy's admin API, reached through the work dir meshinit gives kuma-dp:
//! seeing when the inbound side has gone idle during a drain (so the drain
//! can end then instead of after kuma-dp's fixed time), failing and passing
//! Envoy's health checks (taking the instance out of the mesh and back, as
//! kuma-dp's own drain does), and checking that it answers at all (a hung
//! proxy).

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Envoy's admin API answers: kuma-dp's default Unix socket in its
/// work dir, or the TCP port the Dataplane's `networking.admin.port` names
/// (used when the control plane puts the admin API on TCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    pub socket: PathBuf,
    pub tcp_port: Option<u16>,
}

/// The file name kuma-dp gives Envoy's admin socket in its work dir (when
/// the path is short enough, see [`admin_socket`]).
pub const ADMIN_SOCKET: &str = "kuma-envoy-admin.sock";

/// Where kuma-dp puts Envoy's admin socket for a work dir, as Kuma 2.14's
/// `AdminSocketName` computes it: `<dir>/kuma-envoy-admin` cut to 98 bytes
/// (to fit a Unix socket path's limit), then `.sock`. A long `--work-dir`
/// given by the user therefore gets a shorter name than [`ADMIN_SOCKET`].
pub fn admin_socket(work_dir: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let base = work_dir.join("kuma-envoy-admin");
    let bytes = base.as_os_str().as_bytes();
    let mut name = bytes[..bytes.len().min(98)].to_vec();
    name.extend_from_slice(b".sock");
    PathBuf::from(std::ffi::OsString::from_vec(name))
}

/// The inbound listeners to watch: where Envoy listens for this service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundListener {
    pub address: String,
    pub port: u16,
    /// The app's port behind it; Kuma names the inbound's HTTP connection
    /// manager (and its stats) `localhost_<servicePort>`.
    pub service_port: u16,
}

/// Traffic on the inbound side at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Open downstream connections on the inbound listeners.
    pub connections: u64,
    /// Requests in flight through the inbound listeners.
    pub requests: u64,
}

impl Load {
    pub fn is_idle(&self) -> bool {
        self.connections == 0 && self.requests == 0
    }
}

/// The two kinds of admin request meshinit makes.
#[derive(Clone, Copy)]
enum Method {
    Get,
    /// A mutation, with an empty body, its connect bounded on its own.
    Post {
        connect: Duration,
    },
}

impl Admin {
    /// One admin request: on the socket, else on the TCP port, both within
    /// one `total`, so that an Envoy that accepts on both and answers on
    /// neither (stopped, hung) cannot double the bound.
    async fn request(
        &self,
        method: Method,
        path: &str,
        total: Duration,
    ) -> Result<(u16, String), String> {
        use crate::health::http;
        let deadline = tokio::time::Instant::now() + total;
        let on_socket = match method {
            Method::Get => http::get_unix(&self.socket, path, total).await,
            Method::Post { connect } => http::post_unix(&self.socket, path, connect, total).await,
        };
        let e = match on_socket {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.tcp_port {
            Some(port) if !left.is_zero() => match method {
                Method::Get => http::get_tcp("127.0.0.1", port, path, left).await,
                Method::Post { connect } => {
                    http::post_tcp("127.0.0.1", port, path, connect.min(left), left).await
                }
            },
            _ => Err(e),
        }
    }

    /// GETs an admin path, expecting 200.
    async fn get(&self, path: &str, timeout: Duration) -> Result<String, String> {
        match self.request(Method::Get, path, timeout).await? {
            (200, body) => Ok(body),
            (status, _) => Err(format!("admin {path} answered {status}")),
        }
    }

    /// `POST`s a mutation (`/healthcheck/fail`, `/healthcheck/ok`) with an
    /// empty body and expects 200, as kuma-dp's `adminPost` does; `connect`
    /// and `total` bound it.
    pub async fn post(&self, path: &str, connect: Duration, total: Duration) -> Result<(), String> {
        match self.request(Method::Post { connect }, path, total).await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!(
                "admin {path} answered {status} {}",
                body.trim().chars().take(80).collect::<String>()
            )),
        }
    }

    /// `GET /ready` within `timeout`: the status of any complete HTTP answer
    /// (`200 LIVE`, `503 DRAINING` while out of the mesh, `503 INITIALIZING`
    /// at start); an error when Envoy did not answer. The cheapest admin
    /// request there is: O(1) on Envoy's main thread, a few bytes of body.
    pub async fn ready(&self, timeout: Duration) -> Result<u16, String> {
        Ok(self.request(Method::Get, "/ready", timeout).await?.0)
    }

    /// Reads the inbound load from Envoy's stats.
    pub async fn inbound_load(
        &self,
        listeners: &[InboundListener],
        timeout: Duration,
    ) -> Result<Load, String> {
        let body = self
            .get("/stats?filter=downstream_(cx|rq)_active$", timeout)
            .await?;
        inbound_load(&body, listeners)
    }
}

/// Envoy names a listener's stats after its address: `listener.<ip>_<port>.`
/// (IPv6 addresses keep their colons replaced by underscores as well).
fn listener_prefix(l: &InboundListener) -> String {
    format!("listener.{}_{}.", l.address.replace(':', "_"), l.port)
}

/// Sums the inbound listeners' active connections
/// (`listener.<ip>_<port>.downstream_cx_active`) and the active requests of
/// their HTTP connection managers (`http.localhost_<servicePort>.
/// downstream_rq_active`, as Kuma 2.14 names them; TCP inbounds have only
/// connections). Each inbound listener must be present in the stats: a
/// missing one means meshinit is looking at the wrong Envoy (or the listener
/// is not configured yet), and the caller falls back to the fixed drain.
pub fn inbound_load(stats: &str, listeners: &[InboundListener]) -> Result<Load, String> {
    let mut load = Load::default();
    for l in listeners {
        let connections = format!("{}downstream_cx_active", listener_prefix(l));
        let requests = format!("http.localhost_{}.downstream_rq_active", l.service_port);
        let mut found = false;
        for line in stats.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<u64>() else {
                continue;
            };
            let name = name.trim();
            if name == connections {
                found = true;
                // Saturating: the stats come from another process, and a
                // sum that overflows must not bring meshinit down.
                load.connections = load.connections.saturating_add(value);
            } else if name == requests {
                load.requests = load.requests.saturating_add(value);
            }
        }
        if !found {
            return Err(format!(
                "no stats for the inbound listener {}:{}",
                l.address, l.port
            ));
        }
    }
    Ok(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taken from a real kuma-dp 2.14.3 / Envoy 1.37 inbound with one
    /// request in flight, plus an outbound listener that must not count.
    const STATS: &str = "\
http.admin.downstream_cx_active: 3
http.admin.downstream_rq_active: 1
http.localhost_28011.downstream_cx_active: 2
http.localhost_28011.downstream_rq_active: 1
listener.127.0.0.1_28012.downstream_cx_active: 2
listener.127.0.0.1_28012.worker_0.downstream_cx_active: 2
listener.127.0.0.1_28012.worker_1.downstream_cx_active: 0
listener.127.0.0.1_10000.downstream_cx_active: 7
listener.admin.downstream_cx_active: 3
";

    fn inbound(address: &str, port: u16) -> InboundListener {
        InboundListener {
            address: address.into(),
            port,
            service_port: 28011,
        }
    }

    #[test]
    fn counts_only_the_inbound_listeners() {
        let load = inbound_load(STATS, &[inbound("127.0.0.1", 28012)]).unwrap();
        assert_eq!(
            load,
            Load {
                connections: 2,
                requests: 1
            }
        );
        assert!(!load.is_idle());
        let idle = inbound_load(
            "listener.127.0.0.1_28012.downstream_cx_active: 0\n",
            &[inbound("127.0.0.1", 28012)],
        )
        .unwrap();
        assert!(idle.is_idle());
    }

    #[test]
    fn a_missing_listener_is_an_error() {
        let err = inbound_load(STATS, &[inbound("10.0.0.1", 8000)]).unwrap_err();
        assert!(err.contains("10.0.0.1:8000"), "{err}");
    }

    #[test]
    fn counters_that_would_overflow_saturate() {
        let stats = "listener.127.0.0.1_28012.downstream_cx_active: 18446744073709551615\n\
                     listener.127.0.0.1_28012.downstream_cx_active: 1\n";
        let load = inbound_load(stats, &[inbound("127.0.0.1", 28012)]).unwrap();
        assert_eq!(load.connections, u64::MAX);
    }

    #[test]
    fn the_admin_socket_is_named_as_kuma_names_it() {
        assert_eq!(
            admin_socket(Path::new("/tmp/meshinit-kuma-dp-1")),
            Path::new("/tmp/meshinit-kuma-dp-1").join(ADMIN_SOCKET)
        );
        // 98 bytes of `<dir>/kuma-envoy-admin`, then `.sock` (Kuma's socketName).
        let dir = format!("/srv/{}", "d".repeat(90));
        let got = admin_socket(Path::new(&dir));
        let want = format!("{}/kuma-envoy-admin", dir)[..98].to_string() + ".sock";
        assert_eq!(got, PathBuf::from(want));
        assert_eq!(got.as_os_str().len(), 103);
    }

    #[test]
    fn ipv6_listener_names() {
        let stats = "listener.__1_8000.downstream_cx_active: 3\n";
        assert_eq!(
            inbound_load(stats, &[inbound("::1", 8000)])
                .unwrap()
                .connections,
            3
        );
    }

    /// A stopped Envoy still accepts on its socket and its TCP port and
    /// answers on neither: one check stays within its one bound (it took
    /// twice as long when the TCP try got a fresh one, which stretched the
    /// hang detection by a whole check).
    #[test]
    fn an_unanswering_admin_costs_one_bound_not_two() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("meshinit-admin-bound-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join(ADMIN_SOCKET);
        // Listening sockets that never accept: connects succeed (backlog),
        // reads never end.
        let _unix = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = Admin {
            socket,
            tcp_port: Some(tcp.local_addr().unwrap().port()),
        };
        let bound = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let answer = rt.block_on(admin.ready(bound));
        let took = started.elapsed();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(answer.is_err(), "{answer:?}");
        assert!(
            took < bound + Duration::from_millis(250),
            "one /ready check took {took:?} against a bound of {bound:?}"
        );
    }
}
