//! The container state machine. Illegal transitions are typed errors that map to gRPC
//! FailedPrecondition; the task service never decides legality anywhere else.

use crate::error::{Error, Result};
use crate::exits::Exit;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The instance process exists and has linked the module; the module has not started.
    Created,
    /// The module is running.
    Running,
    /// The instance process has ended.
    Stopped(Exit),
}

/// What Delete has to do first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePlan {
    /// Nothing: the process has exited with this status.
    Ready(Exit),
    /// The module never started: stop the waiting process, then delete.
    StopUnstarted,
}

impl State {
    /// Created → Running.
    pub fn start(&mut self, id: &str) -> Result<()> {
        match self {
            State::Created => {
                *self = State::Running;
                Ok(())
            }
            State::Running => Err(Error::FailedPrecondition(format!(
                "container {id} is already running"
            ))),
            State::Stopped(_) => Err(Error::FailedPrecondition(format!(
                "container {id} has already exited and cannot be started again"
            ))),
        }
    }

    /// Any state → Stopped. A second exit is ignored (the first one is the truth).
    pub fn exit(&mut self, exit: Exit) {
        if !matches!(self, State::Stopped(_)) {
            *self = State::Stopped(exit);
        }
    }

    /// Whether a signal can still reach the process.
    pub fn kill(&self, id: &str) -> Result<()> {
        match self {
            State::Created | State::Running => Ok(()),
            State::Stopped(_) => Err(Error::NotFound(format!(
                "process of container {id} (it has already finished)"
            ))),
        }
    }

    /// What Delete must do in this state.
    pub fn delete(&self, id: &str) -> Result<DeletePlan> {
        match self {
            State::Created => Ok(DeletePlan::StopUnstarted),
            State::Running => Err(Error::FailedPrecondition(format!(
                "container {id} is running: kill it before deleting it"
            ))),
            State::Stopped(exit) => Ok(DeletePlan::Ready(*exit)),
        }
    }

    /// The exit, once there is one.
    pub fn exited(&self) -> Option<Exit> {
        match self {
            State::Stopped(exit) => Some(*exit),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use containerd_shim::protos::ttrpc::Code;

    use super::*;

    fn exit(code: u32) -> Exit {
        Exit {
            code,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn created_starts_once() {
        let mut s = State::Created;
        s.start("c").unwrap();
        assert_eq!(s, State::Running);
        let err = s.start("c").unwrap_err();
        assert_eq!(err.code(), Code::FAILED_PRECONDITION);
    }

    #[test]
    fn start_after_exit_is_failed_precondition() {
        let mut s = State::Stopped(exit(0));
        assert_eq!(s.start("c").unwrap_err().code(), Code::FAILED_PRECONDITION);
    }

    #[test]
    fn delete_of_running_container_is_failed_precondition() {
        let err = State::Running.delete("c").unwrap_err();
        assert_eq!(err.code(), Code::FAILED_PRECONDITION);
        assert!(err.to_string().contains("kill it"), "{err}");
    }

    #[test]
    fn delete_plans_follow_the_state() {
        assert_eq!(
            State::Created.delete("c").unwrap(),
            DeletePlan::StopUnstarted
        );
        assert_eq!(
            State::Stopped(exit(3)).delete("c").unwrap(),
            DeletePlan::Ready(exit(3))
        );
    }

    #[test]
    fn kill_after_exit_is_not_found() {
        assert_eq!(
            State::Stopped(exit(0)).kill("c").unwrap_err().code(),
            Code::NOT_FOUND
        );
        State::Created.kill("c").unwrap();
        State::Running.kill("c").unwrap();
    }

    #[test]
    fn first_exit_wins() {
        let mut s = State::Running;
        s.exit(exit(137));
        s.exit(exit(0));
        assert_eq!(s.exited(), Some(exit(137)));
    }
}
