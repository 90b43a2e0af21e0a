//! Who gets a connection slot on meshinit's two local servers (the status
//! endpoint and the control socket): each connection runs in its own task,
//! at most `max` are held, and at the cap the one that has waited longest
//! without sending its request is closed to admit the newcomer, so peers
//! that connect and say nothing can never lock out a health checker or an
//! operator. Only when every slot is answering a request is the newcomer
//! turned away (the server decides how).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use tokio::task::AbortHandle;

/// The slots of one server; lives in its accept loop (a local task set:
/// everything here runs on meshinit's one thread).
pub(crate) struct Admission {
    conns: Rc<RefCell<Connections>>,
    max: usize,
}

impl Admission {
    pub fn new(max: usize) -> Admission {
        Admission {
            conns: Rc::default(),
            max,
        }
    }

    /// After a failed accept (out of descriptors, most likely): an idle
    /// connection gives one back; without one, back off rather than spin on
    /// an accept that keeps failing.
    pub async fn accept_failed(&self) {
        if !self.evict_oldest_idle().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes room for one more connection: true when there is room (the
    /// oldest idle connection closed if the cap was reached), false when
    /// every slot is answering a request.
    pub async fn make_room(&self) -> bool {
        let full = self.conns.borrow().open() >= self.max;
        !full || self.evict_oldest_idle().await
    }

    /// Runs a connection's task, given its slot: idle until
    /// [`Slot::answering`], given back when the task ends however it ends.
    pub fn spawn<F>(&self, task: impl FnOnce(Slot) -> F)
    where
        F: Future<Output = ()> + 'static,
    {
        let mut c = self.conns.borrow_mut();
        let id = c.next_id;
        c.next_id += 1;
        let slot = Slot {
            conns: self.conns.clone(),
            id,
            answering: false,
        };
        // The task runs only once this one yields, so it is registered as
        // idle before it can leave that state.
        let handle = tokio::task::spawn_local(task(slot));
        c.idle.insert(id, handle.abort_handle());
    }

    /// Connections held now (tests see a slot given back).
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.conns.borrow().open()
    }

    async fn evict_oldest_idle(&self) -> bool {
        // Taken out first and aborted once the borrow is released: aborting
        // drops the task's future, its socket and its Slot, which borrows
        // the connections again.
        let oldest = self.conns.borrow_mut().idle.pop_first();
        let Some((_, task)) = oldest else {
            return false;
        };
        tracing::debug!("closing the oldest connection still without a request to admit a new one");
        task.abort();
        // The aborted task is dropped (its socket closed) when the event
        // loop next runs it: let it, so the cap holds for descriptors too,
        // not just for tasks.
        tokio::task::yield_now().await;
        true
    }
}

/// The open connections: those still waiting for their request, oldest
/// first (ids grow with each accept), and how many are being answered.
#[derive(Default)]
struct Connections {
    next_id: u64,
    idle: BTreeMap<u64, AbortHandle>,
    answering: usize,
}

impl Connections {
    fn open(&self) -> usize {
        self.idle.len() + self.answering
    }
}

/// A connection's place in its server's [`Admission`], given back when its
/// task ends (finished, timed out or aborted).
pub(crate) struct Slot {
    conns: Rc<RefCell<Connections>>,
    id: u64,
    answering: bool,
}

impl Slot {
    /// The request has arrived: the connection is no longer idle, and no
    /// longer one that may be closed to make room.
    pub fn answering(&mut self) {
        let mut c = self.conns.borrow_mut();
        if c.idle.remove(&self.id).is_some() {
            c.answering += 1;
            self.answering = true;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.conns.borrow_mut();
        if self.answering {
            c.answering -= 1;
        } else {
            // Absent when it was evicted: its room is already taken.
            c.idle.remove(&self.id);
        }
    }
}
