//! The instance process's sandbox, entered once before any module code runs: the pod's
//! network namespace (or a new empty one), a private mount namespace, the spec's user,
//! `no_new_privs`, no capabilities, and a seccomp filter that refuses the syscalls a
//! container never needs (mounts, namespaces, ptrace, kernel modules, bpf, keyrings...).
//! Nothing of the shim's root privileges is left when the module runs.

use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use serde::{Deserialize, Serialize};

/// Which network namespace the module uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetNs {
    /// The host's (the spec lists no network namespace).
    Host,
    /// A new, empty one (the spec lists one without a path).
    New,
    /// An existing one, e.g. the pod's (the spec gives its path).
    Join(PathBuf),
}

/// Everything the instance process sets up about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Network namespace.
    pub netns: NetNs,
    /// User id to run as.
    pub uid: u32,
    /// Group id to run as.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// Enters the sandbox. Must run while the process is single-threaded.
pub fn enter(sandbox: &Sandbox) -> Result<(), String> {
    match &sandbox.netns {
        NetNs::Host => {}
        NetNs::New => unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot create a network namespace: {e}"))?,
        NetNs::Join(path) => {
            let ns = std::fs::File::open(path)
                .map_err(|e| format!("cannot open network namespace {}: {e}", path.display()))?;
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot join network namespace {}: {e}", path.display()))?;
        }
    }
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("cannot create a mount namespace: {e}"))?;
    // Nothing mounted here propagates back to the host.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make the mount namespace private: {e}"))?;
    let groups: Vec<nix::unistd::Gid> = sandbox
        .additional_gids
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(sandbox.gid))
        .map_err(|e| format!("setgid {}: {e}", sandbox.gid))?;
    drop_bounding_set()?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(sandbox.uid))
        .map_err(|e| format!("setuid {}: {e}", sandbox.uid))?;
    clear_capabilities()?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
    }
    seccomp::install()
}

fn drop_bounding_set() -> Result<(), String> {
    for cap in 0..=63 {
        // SAFETY: prctl with integer arguments only. EINVAL marks the end of known caps.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(format!(
                "cannot drop capability {cap} from the bounding set: {err}"
            ));
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn clear_capabilities() -> Result<(), String> {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and data are valid for the v3 layout (two 32-bit data words).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    // Ambient capabilities are cleared with the permitted set; make it explicit anyway.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    Ok(())
}

/// The seccomp filter, written as classic BPF.
pub mod seccomp {
    /// Syscalls refused with EPERM.
    pub const DENIED: &[libc::c_long] = &[
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_syslog,
        libc::SYS_acct,
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_quotactl,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
    ];
    /// clone flags that would create namespaces.
    const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP) as u32;

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;

    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_JGE_K: u16 = 0x35;
    const BPF_JSET_K: u16 = 0x45;
    const BPF_RET_K: u16 = 0x06;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const OFFSET_NR: u32 = 0;
    const OFFSET_ARCH: u32 = 4;
    const OFFSET_ARG0: u32 = 16;

    fn stmt(code: u16, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// The filter program.
    pub fn program() -> Vec<libc::sock_filter> {
        let mut p = vec![
            stmt(BPF_LD_W_ABS, OFFSET_ARCH),
            jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
            stmt(BPF_RET_K, RET_KILL_PROCESS),
            stmt(BPF_LD_W_ABS, OFFSET_NR),
        ];
        if cfg!(target_arch = "x86_64") {
            // The x32 ABI shares the arch value: refuse it outright.
            p.push(jump(BPF_JGE_K, 0x4000_0000, 0, 1));
            p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
        }
        for nr in DENIED {
            p.push(jump(BPF_JEQ_K, *nr as u32, 0, 1));
            p.push(stmt(BPF_RET_K, RET_ERRNO | libc::EPERM as u32));
        }
        // clone3 hides its flags in memory: answer ENOSYS so libc falls back to clone.
        p.push(jump(BPF_JEQ_K, libc::SYS_clone3 as u32, 0, 1));
        p.push(stmt(BPF_RET_K, RET_ERRNO | libc::ENOSYS as u32));
        p.push(jump(BPF_JEQ_K, libc::SYS_clone as u32, 0, 3));
        p.push(stmt(BPF_LD_W_ABS, OFFSET_ARG0));
        p.push(jump(BPF_JSET_K, NAMESPACE_FLAGS, 0, 1));
        p.push(stmt(BPF_RET_K, RET_ERRNO | libc::EPERM as u32));
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        p
    }

    /// Installs the filter on the calling thread (and what it spawns later).
    pub fn install() -> Result<(), String> {
        let filter = program();
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `filter`, which outlives the call; the kernel copies it.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(format!("seccomp: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_program_ends_in_allow_and_denies_each_listed_syscall() {
        let p = seccomp::program();
        assert!(p.len() < 4096);
        assert_eq!(p.last().map(|i| (i.code, i.k)), Some((0x06, 0x7fff_0000)));
        for nr in seccomp::DENIED {
            assert!(
                p.iter().any(|i| i.code == 0x15 && i.k == *nr as u32),
                "syscall {nr} not in the filter"
            );
        }
    }

    #[test]
    fn sandbox_round_trips_through_the_plan_encoding() {
        let s = Sandbox {
            netns: NetNs::Join("/var/run/netns/cni-1".into()),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![5],
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Sandbox>(&text).unwrap(), s);
    }
}
