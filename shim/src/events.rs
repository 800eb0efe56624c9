//! Task events published to containerd, in lifecycle order (the publisher is a FIFO queue, and
//! the task service calls these under each container's event lock).

use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskStart,
};
use containerd_shim::protos::protobuf::{well_known_types::timestamp::Timestamp, MessageDyn};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context::Context;
use tracing::warn;

use crate::exits::Exit;

/// Publishes one shim's task events into one containerd namespace.
#[derive(Clone)]
pub struct Events {
    publisher: Arc<RemotePublisher>,
    namespace: String,
}

/// Converts a time to the protobuf form.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

impl Events {
    /// Publisher for `namespace`.
    pub fn new(publisher: RemotePublisher, namespace: String) -> Self {
        Events {
            publisher: Arc::new(publisher),
            namespace,
        }
    }

    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            warn!(topic, error = %e, "failed to publish event");
        }
    }

    /// `/tasks/create`.
    pub async fn created(&self, id: &str, bundle: &str, io: [&str; 3], terminal: bool, pid: u32) {
        let event = TaskCreate {
            container_id: id.to_string(),
            bundle: bundle.to_string(),
            io: Some(TaskIO {
                stdin: io[0].to_string(),
                stdout: io[1].to_string(),
                stderr: io[2].to_string(),
                terminal,
                ..Default::default()
            })
            .into(),
            pid,
            ..Default::default()
        };
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(event))
            .await;
    }

    /// `/tasks/start`.
    pub async fn started(&self, id: &str, pid: u32) {
        let event = TaskStart {
            container_id: id.to_string(),
            pid,
            ..Default::default()
        };
        self.publish(topics::TASK_START_EVENT_TOPIC, Box::new(event))
            .await;
    }

    /// `/tasks/oom`: the kernel's OOM killer ended the container's process.
    pub async fn oom(&self, id: &str) {
        let event = TaskOOM {
            container_id: id.to_string(),
            ..Default::default()
        };
        self.publish(topics::TASK_OOM_EVENT_TOPIC, Box::new(event))
            .await;
    }

    /// `/tasks/exit` of the container's module (the process id is the container id).
    pub async fn exited(&self, id: &str, pid: u32, exit: Exit) {
        self.exec_exited(id, id, pid, exit).await;
    }

    /// `/tasks/exec-added`: exec process `exec_id` was created in container `id`.
    pub async fn exec_added(&self, id: &str, exec_id: &str) {
        let event = TaskExecAdded {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(event))
            .await;
    }

    /// `/tasks/exec-started`.
    pub async fn exec_started(&self, id: &str, exec_id: &str, pid: u32) {
        let event = TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
            ..Default::default()
        };
        self.publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(event))
            .await;
    }

    /// `/tasks/exit` of process `exec_id` in container `id`.
    pub async fn exec_exited(&self, id: &str, exec_id: &str, pid: u32, exit: Exit) {
        let event = TaskExit {
            container_id: id.to_string(),
            id: exec_id.to_string(),
            pid,
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        };
        self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event))
            .await;
    }

    /// `/tasks/delete`.
    pub async fn deleted(&self, id: &str, pid: u32, exit: Exit) {
        let event = TaskDelete {
            container_id: id.to_string(),
            pid,
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        };
        self.publish(topics::TASK_DELETE_EVENT_TOPIC, Box::new(event))
            .await;
    }
}
