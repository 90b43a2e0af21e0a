//! The idle watch: reads Envoy's inbound stats during a drain, so that the
//! lifecycle can end the drain once nothing flows (`--drain-idle`).
//!
//! Every reading goes to the lifecycle, which decides when the inbound
//! side has been idle long enough and how many failed readings it
//! tolerates; this only polls and remembers what the log lines mention.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::config::ProxyConfig;
use crate::lifecycle::Input;
use crate::mesh::envoy::Load;

/// How often Envoy's stats are read during an idle-watched drain.
const POLL: Duration = Duration::from_millis(100);

/// One reading of the inbound side's load, or why it failed.
pub(super) type Reading = Result<Load, String>;

pub(super) struct IdleWatch {
    tx: mpsc::UnboundedSender<Reading>,
    task: Option<JoinHandle<()>>,
    /// The busiest inbound load read during this drain, for the log line of
    /// the idle decision.
    peak: Load,
    /// The last failed reading, for the log line when the lifecycle gives up.
    last_error: Option<String>,
    /// The last load read, for `ctl out`'s answer when the wait times out.
    last: Option<Load>,
}

impl IdleWatch {
    /// Readings go to `tx`; the driver hands them back to [`IdleWatch::reading`].
    pub fn new(tx: mpsc::UnboundedSender<Reading>) -> IdleWatch {
        IdleWatch {
            tx,
            task: None,
            peak: Load::default(),
            last_error: None,
            last: None,
        }
    }

    /// Starts polling `proxy`'s Envoy (`Some`), or stops (`None`); either
    /// way the peak and the last error start afresh.
    pub fn set(&mut self, proxy: Option<&ProxyConfig>) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.peak = Load::default();
        self.last_error = None;
        let Some(proxy) = proxy else { return };
        self.last = None;
        let admin = proxy.admin.clone();
        let listeners = proxy.inbound_listeners.clone();
        let tx = self.tx.clone();
        self.task = Some(tokio::task::spawn_local(async move {
            loop {
                let load = admin.inbound_load(&listeners, Duration::from_secs(1)).await;
                if tx.send(load).is_err() {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        }));
    }

    /// What a reading tells the lifecycle; `None` when the watch stopped
    /// after it was taken.
    pub fn reading(&mut self, reading: &Reading) -> Option<Input> {
        self.task.as_ref()?;
        Some(match reading {
            Ok(load) => {
                self.peak.connections = self.peak.connections.max(load.connections);
                self.peak.requests = self.peak.requests.max(load.requests);
                self.last = Some(*load);
                debug!(
                    connections = load.connections,
                    requests = load.requests,
                    "inbound load"
                );
                if load.is_idle() {
                    Input::InboundIdle
                } else {
                    Input::InboundBusy
                }
            }
            Err(e) => {
                debug!(error = %crate::basics::escape::Escaped(e), "inbound stats not read");
                self.last_error = Some(e.clone());
                Input::InboundUnreadable
            }
        })
    }

    /// The last load read since the watch started (kept after it stopped).
    pub fn last(&self) -> Option<Load> {
        self.last
    }

    pub fn peak(&self) -> Load {
        self.peak
    }

    pub fn last_error(&self) -> &str {
        self.last_error.as_deref().unwrap_or_default()
    }
}
