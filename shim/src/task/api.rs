//! The ttrpc `Task` trait, adapted onto [`TaskService`]'s inherent methods. Every call the shim
//! does not offer answers UNIMPLEMENTED (the generated defaults would say NOT_FOUND).

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, Status,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::api::{CheckpointTaskRequest, ProcessInfo};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::Result as TtrpcResult;

use oci_spec::runtime::LinuxResources;

use super::state::State;
use super::{CreateRequest, ExecRequest, TaskService};
use crate::error::Error;
use crate::events::timestamp;

#[async_trait::async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(Error::Unimplemented("restoring from a checkpoint").into());
        }
        let pid = TaskService::create(
            self,
            CreateRequest {
                id: req.id.clone(),
                bundle: req.bundle.clone().into(),
                rootfs: req.rootfs.clone(),
                terminal: req.terminal,
                stdio: [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()],
                options: req.options.clone().into_option(),
            },
        )
        .await?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let pid = if req.exec_id.is_empty() {
            TaskService::start(self, &req.id).await?
        } else {
            self.exec_start(&req.id, &req.exec_id).await?
        };
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let s = if req.exec_id.is_empty() {
            self.status(&req.id)?
        } else {
            self.exec_status(&req.id, &req.exec_id)?
        };
        let mut resp = StateResponse {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            bundle: s.bundle.to_string_lossy().into_owned(),
            pid: s.pid,
            stdin: s.stdio[0].clone(),
            stdout: s.stdio[1].clone(),
            stderr: s.stdio[2].clone(),
            terminal: s.terminal,
            ..Default::default()
        };
        match s.state {
            State::Created => resp.set_status(Status::CREATED),
            State::Running => resp.set_status(Status::RUNNING),
            State::Stopped(exit) => {
                resp.set_status(Status::STOPPED);
                resp.exit_status = exit.code;
                resp.exited_at = MessageField::some(timestamp(exit.at));
            }
        }
        Ok(resp)
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        if req.exec_id.is_empty() {
            TaskService::kill(self, &req.id, req.signal).await?;
        } else {
            self.exec_kill(&req.id, &req.exec_id, req.signal)?;
        }
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let exit = if req.exec_id.is_empty() {
            TaskService::wait(self, &req.id).await?
        } else {
            self.exec_wait(&req.id, &req.exec_id).await?
        };
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let (pid, exit) = if req.exec_id.is_empty() {
            TaskService::delete(self, &req.id).await?
        } else {
            self.exec_delete(&req.id, &req.exec_id).await?
        };
        Ok(DeleteResponse {
            pid,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let processes = TaskService::pids(self, &req.id)?
            .into_iter()
            .map(|pid| ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        if req.stdin && req.exec_id.is_empty() {
            self.close_stdin(&req.id)?;
        } else if req.stdin {
            self.exec_close_stdin(&req.id, &req.exec_id)?;
        }
        Ok(Empty::new())
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self.task_pid(&req.id).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        TaskService::shutdown(self, req.now);
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let stats = TaskService::stats(self, &req.id)?;
        Ok(StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, _req: PauseRequest) -> TtrpcResult<Empty> {
        Err(Error::Unimplemented("Pause").into())
    }

    async fn resume(&self, _ctx: &TtrpcContext, _req: ResumeRequest) -> TtrpcResult<Empty> {
        Err(Error::Unimplemented("Resume").into())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(Error::Unimplemented("Checkpoint").into())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        // containerd sends the OCI process (args, env, cwd) as JSON inside the Any.
        let process = serde_json::from_slice(&req.spec.value).map_err(|e| {
            Error::InvalidArgument(format!(
                "exec {} in container {}: the process ({}) is not an OCI process JSON: {e}",
                req.exec_id, req.id, req.spec.type_url
            ))
        })?;
        TaskService::exec(
            self,
            ExecRequest {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                terminal: req.terminal,
                stdio: [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()],
                process,
            },
        )
        .await?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        TaskService::resize_pty(self, &req.id, &req.exec_id, req.width, req.height)?;
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        // containerd sends the OCI LinuxResources as JSON inside the Any.
        let resources: LinuxResources =
            serde_json::from_slice(&req.resources.value).map_err(|e| {
                Error::InvalidArgument(format!(
                    "update of {}: resources ({}) are not OCI LinuxResources JSON: {e}",
                    req.id, req.resources.type_url
                ))
            })?;
        TaskService::update(self, &req.id, &resources)?;
        Ok(Empty::new())
    }
}
