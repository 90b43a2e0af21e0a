//! Taking the instance out of the mesh and putting it back: the calls on
//! Envoy's admin API that the lifecycle decides (`Action::Membership`).
//!
//! `POST /healthcheck/fail` is what kuma-dp itself sends at the start of
//! its drain: Envoy's `/ready` then answers `503 DRAINING`, the health
//! check kuma-cp's HDS runs against it fails, and kuma-cp marks the
//! Dataplane's inbounds not ready, so clients stop routing to it.
//! `POST /healthcheck/ok` reverses it. Both are idempotent, so a call that
//! failed is simply sent again (every [`RETRY`]) for as long as the
//! decision stands; a newer decision replaces it. Never SIGUSR2: kuma-dp's
//! `/drain_listeners` cannot be undone.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::lifecycle::MeshCall;
use crate::mesh::envoy::Admin;

/// kuma-dp's own admin client bounds (`NewTCPOrUDS(.., 5s, 10s)`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two tries of a call that failed.
const RETRY: Duration = Duration::from_secs(1);

/// How one try of a call went, for the log and `/metrics`.
#[derive(Debug)]
pub(super) struct Outcome {
    pub call: MeshCall,
    /// Which try of this call (1 for the first).
    pub attempt: u32,
    pub result: Result<(), String>,
}

pub(super) struct MeshCalls {
    tx: mpsc::UnboundedSender<Outcome>,
    task: Option<JoinHandle<()>>,
}

impl MeshCalls {
    pub fn new(tx: mpsc::UnboundedSender<Outcome>) -> MeshCalls {
        MeshCalls { tx, task: None }
    }

    /// Carries out `call` on `admin` (replacing a call still being tried),
    /// or stops calling.
    pub fn set(&mut self, call: MeshCall, admin: Option<&Admin>) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let Some(path) = admin_path(call) else { return };
        let Some(admin) = admin.cloned() else { return };
        let tx = self.tx.clone();
        self.task = Some(tokio::task::spawn_local(async move {
            for attempt in 1u32.. {
                let result = admin.post(path, CONNECT_TIMEOUT, TOTAL_TIMEOUT).await;
                let done = result.is_ok();
                if tx
                    .send(Outcome {
                        call,
                        attempt,
                        result,
                    })
                    .is_err()
                    || done
                {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }));
    }
}

/// The admin path that carries out `call` (kuma-dp's own drain uses the
/// first); `Stop` makes no call.
pub(super) fn admin_path(call: MeshCall) -> Option<&'static str> {
    match call {
        MeshCall::Leave => Some("/healthcheck/fail"),
        MeshCall::Rejoin => Some("/healthcheck/ok"),
        MeshCall::Stop => None,
    }
}
