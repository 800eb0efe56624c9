//! Exit tracking for instance processes. containerd-shim's reaper collects every child's status
//! (`waitpid(-1)`) and publishes it on its monitor; this module routes each status to the
//! container that owns the pid. A pid is registered while the routes are locked, before the
//! router can look at the exit of that pid, so no exit is missed however early it comes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use containerd_shim::monitor::{Subject, Topic};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, or 128 + signal number when a signal ended it.
    pub code: u32,
    /// When the shim saw it end.
    pub at: SystemTime,
}

/// Receives a process's exit once it happens.
pub type ExitWatch = watch::Receiver<Option<Exit>>;

type Routes = HashMap<i32, watch::Sender<Option<Exit>>>;

/// The router from reaped pids to containers.
#[derive(Default, Clone)]
pub struct Exits {
    routes: Arc<Mutex<Routes>>,
}

impl Exits {
    /// Subscribes to the shim's reaper and starts routing.
    pub async fn start() -> Result<Exits> {
        let mut sub = containerd_shim::asynchronous::monitor::monitor_subscribe(Topic::Pid)
            .await
            .map_err(Error::from)?;
        let exits = Exits::default();
        let routes = exits.routes.clone();
        tokio::spawn(async move {
            while let Some(event) = sub.rx.recv().await {
                let Subject::Pid(pid) = event.subject else {
                    continue;
                };
                let exit = Exit {
                    code: event.exit_code as u32,
                    at: SystemTime::now(),
                };
                // Pids nobody registered are not ours to report.
                let tx = routes
                    .lock()
                    .expect("exit routes lock poisoned")
                    .remove(&pid);
                if let Some(tx) = tx {
                    let _ = tx.send(Some(exit));
                }
            }
        });
        Ok(exits)
    }

    /// Runs `spawn` (which starts a process and returns its pid) while holding the routes, so
    /// the exit of that pid cannot be missed however early it comes.
    pub fn track<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<(T, i32)>,
    ) -> std::io::Result<(T, i32, ExitWatch)> {
        let mut routes = self.routes.lock().expect("exit routes lock poisoned");
        let (value, pid) = spawn()?;
        let (tx, rx) = watch::channel(None);
        routes.insert(pid, tx);
        Ok((value, pid, rx))
    }
}
