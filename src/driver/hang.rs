//! Whether kuma-dp's Envoy still answers: `GET /ready` on its admin API
//! every [`PERIOD`] while kuma-dp runs (`Action::WatchProxy`), one
//! connection per check, each bounded by [`DEADLINE`]. Any complete HTTP
//! answer counts, `503 DRAINING` (out of the mesh) and `503 INITIALIZING`
//! included: a hang is silence, not a status. The readings go to the
//! lifecycle, which decides when silence has lasted `--proxy-hang-timeout`.
//!
//! Envoy's admin socket is read directly, not kuma-dp's `/ready`: that one
//! adds a Go hop and a 3 s timeout of its own, and answers `503 DRAINING`
//! too while the instance is out of the mesh. Nothing is polled while no
//! kuma-dp runs (plain init mode costs no wake-up).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::mesh::envoy::Admin;

/// Time between two checks: a hang is found within the timeout plus this.
/// Envoy serves the admin API on its main thread, where `/ready` costs a
/// few microseconds, so this is well below a measurable load.
pub(super) const PERIOD: Duration = Duration::from_secs(2);
/// How long one check may take, connection included. A stopped Envoy
/// accepts connections (the kernel queues them) and never answers.
pub(super) const DEADLINE: Duration = Duration::from_millis(2500);

/// One check of the kuma-dp start `generation`: answered or not.
pub(super) type Reading = (u64, bool);

pub(super) struct HangWatch {
    tx: mpsc::UnboundedSender<Reading>,
    task: Option<JoinHandle<()>>,
}

impl HangWatch {
    pub fn new(tx: mpsc::UnboundedSender<Reading>) -> HangWatch {
        HangWatch { tx, task: None }
    }

    /// Starts checking `admin` for kuma-dp's start `generation`, or stops
    /// (`None`).
    pub fn set(&mut self, watch: Option<(&Admin, u64)>) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let Some((admin, generation)) = watch else {
            return;
        };
        let admin = admin.clone();
        let tx = self.tx.clone();
        self.task = Some(tokio::task::spawn_local(async move {
            let mut ticks = tokio::time::interval(PERIOD);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let answered = admin.ready(DEADLINE).await.is_ok();
                if tx.send((generation, answered)).is_err() {
                    return;
                }
            }
        }));
    }
}
