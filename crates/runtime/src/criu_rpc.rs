//! CRIU's RPC (`criu swrk FD`): the messages ferry sends and reads, and one request's session
//! with a CRIU child. runc drives CRIU the same way; ferry's native engine talks to CRIU
//! directly, so that nothing but CRIU itself runs while an app is frozen (no runc process, no
//! version query and feature check, each of which starts another CRIU).
//!
//! The messages are those of CRIU's `images/rpc.proto` (protobuf 2), written out here with
//! prost for the fields ferry uses; the field numbers are CRIU's wire protocol. CRIU ignores
//! fields it does not know, and ferry reads only what it asked for.
//!
//! Transport: a `SOCK_SEQPACKET` socket pair; CRIU gets one end as descriptor 3 (`swrk 3`),
//! every message is one packet. With `notify_scripts`, CRIU sends a `NOTIFY` response at
//! each step (`post-dump`, `status-ready`, ...) and waits for a `NOTIFY` request saying
//! success before it goes on.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;

/// The request types ferry sends (`criu_req_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ReqType {
    Empty = 0,
    Dump = 1,
    Restore = 2,
    Check = 3,
    PreDump = 4,
    PageServer = 5,
    Notify = 6,
    FeatureCheck = 9,
    Version = 10,
}

/// How CRIU treats the task's cgroups (`criu_cg_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum CgMode {
    Ignore = 0,
    None = 1,
    Props = 2,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

/// How CRIU locks the network of the tasks' namespaces (`criu_network_lock_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum NetworkLock {
    Iptables = 1,
    Nftables = 2,
    Skip = 3,
}

#[derive(Clone, PartialEq, Message)]
pub struct PageServerInfo {
    #[prost(string, optional, tag = "1")]
    pub address: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub port: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub pid: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub fd: Option<i32>,
}

/// `key` inside the container's mount namespace is `val` outside (dump: a name; restore:
/// the host path to bind there).
#[derive(Clone, PartialEq, Message)]
pub struct ExtMountMap {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub val: String,
}

/// A descriptor of the caller that stands for an external resource named `key` at dump.
#[derive(Clone, PartialEq, Message)]
pub struct InheritFd {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(int32, required, tag = "2")]
    pub fd: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct CgroupRoot {
    #[prost(string, optional, tag = "1")]
    pub ctrl: Option<String>,
    #[prost(string, required, tag = "2")]
    pub path: String,
}

/// `criu_opts`: the options of one dump or restore.
#[derive(Clone, PartialEq, Message)]
pub struct Opts {
    #[prost(int32, required, tag = "1", default = "-1")]
    pub images_dir_fd: i32,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
    #[prost(bool, optional, tag = "3")]
    pub leave_running: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub tcp_established: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub evasive_devices: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub shell_job: Option<bool>,
    #[prost(int32, optional, tag = "9")]
    pub log_level: Option<i32>,
    #[prost(string, optional, tag = "10")]
    pub log_file: Option<String>,
    #[prost(message, optional, tag = "11")]
    pub ps: Option<PageServerInfo>,
    #[prost(bool, optional, tag = "12")]
    pub notify_scripts: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub root: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub parent_img: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub track_mem: Option<bool>,
    #[prost(int32, optional, tag = "17")]
    pub work_dir_fd: Option<i32>,
    #[prost(message, repeated, tag = "23")]
    pub ext_mnt: Vec<ExtMountMap>,
    #[prost(bool, optional, tag = "24")]
    pub manage_cgroups: Option<bool>,
    #[prost(message, repeated, tag = "25")]
    pub cg_root: Vec<CgroupRoot>,
    #[prost(message, repeated, tag = "27")]
    pub inherit_fd: Vec<InheritFd>,
    #[prost(enumeration = "CgMode", optional, tag = "34")]
    pub manage_cgroups_mode: Option<i32>,
    #[prost(string, repeated, tag = "37")]
    pub external: Vec<String>,
    #[prost(string, optional, tag = "44")]
    pub freeze_cgroup: Option<String>,
    #[prost(bool, optional, tag = "46")]
    pub tcp_skip_in_flight: Option<bool>,
    #[prost(bool, optional, tag = "48")]
    pub lazy_pages: Option<bool>,
    #[prost(bool, optional, tag = "50")]
    pub orphan_pts_master: Option<bool>,
    #[prost(string, optional, tag = "54")]
    pub tls_cacert: Option<String>,
    #[prost(string, optional, tag = "56")]
    pub tls_cert: Option<String>,
    #[prost(string, optional, tag = "57")]
    pub tls_key: Option<String>,
    #[prost(bool, optional, tag = "58")]
    pub tls: Option<bool>,
    #[prost(bool, optional, tag = "59")]
    pub tls_no_cn_verify: Option<bool>,
    #[prost(string, optional, tag = "60")]
    pub cgroup_yard: Option<String>,
    #[prost(enumeration = "NetworkLock", optional, tag = "64")]
    pub network_lock: Option<i32>,
    /// ferry's CRIU patch 0014: KiB of filler sent to the page server right after
    /// connecting, before the pre-dump notification (field number outside upstream's range).
    #[prost(uint32, optional, tag = "1001")]
    pub ps_warm_up_kib: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Req {
    #[prost(enumeration = "ReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub opts: Option<Opts>,
    #[prost(bool, optional, tag = "3")]
    pub notify_success: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DumpResp {
    #[prost(bool, optional, tag = "1")]
    pub restored: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RestoreResp {
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Notify {
    #[prost(string, optional, tag = "1")]
    pub script: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resp {
    #[prost(enumeration = "ReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(message, optional, tag = "3")]
    pub dump: Option<DumpResp>,
    #[prost(message, optional, tag = "4")]
    pub restore: Option<RestoreResp>,
    #[prost(message, optional, tag = "5")]
    pub notify: Option<Notify>,
    #[prost(message, optional, tag = "6")]
    pub ps: Option<PageServerInfo>,
    #[prost(int32, optional, tag = "7")]
    pub cr_errno: Option<i32>,
    #[prost(string, optional, tag = "9")]
    pub cr_errmsg: Option<String>,
}

/// What went wrong talking to CRIU.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot start {criu}: {source}")]
    Start {
        criu: String,
        source: std::io::Error,
    },
    #[error("CRIU's RPC socket: {0}")]
    Socket(#[from] nix::Error),
    #[error("CRIU sent a message that is not a criu_resp: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("CRIU closed its RPC socket without an answer (it died; see its log)")]
    Closed,
    #[error("CRIU did not answer within {0:?}")]
    TimedOut(Duration),
    /// CRIU answered, and the request failed. `msg` is the first error CRIU logged, often
    /// a harmless one (it logs not being able to raise its own file limit without
    /// CAP_SYS_RESOURCE as an error); its log's last errors say more.
    #[error("CRIU {request:?} failed{}", errno.filter(|e| *e != 0).map(|e| format!(" (errno {e})")).unwrap_or_default())]
    Failed {
        request: ReqType,
        errno: Option<i32>,
        msg: Option<String>,
    },
}

/// Largest message CRIU sends (a response with a notification or an error text).
const MAX_PACKET: usize = 64 * 1024;

/// One `criu swrk` child and its RPC socket.
pub struct Session {
    /// Taken by [`Session::call_until_notified`].
    child: Option<Child>,
    /// Closed (taken) when the session ends.
    sock: Option<OwnedFd>,
}

impl Session {
    /// Starts `criu swrk 3`; `fds` are handed to it as descriptors 4, 5, ... (in order), for
    /// `inherit_fd` options. CRIU's own stdio is /dev/null: it logs to its log file.
    pub fn start(criu: &Path, fds: &[RawFd]) -> Result<Session, RpcError> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        use std::os::unix::process::CommandExt;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let mut wanted: Vec<RawFd> = vec![theirs.as_raw_fd()];
        wanted.extend_from_slice(fds);
        let mut cmd = Command::new(criu);
        cmd.args(["swrk", "3"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a signal meant for the daemon does not reach it, and
            // stopping a lazy dump reaches every process CRIU started.
            .process_group(0);
        // SAFETY: runs in the child between fork and exec and only calls dup/dup2/fcntl,
        // which are async-signal-safe. Each wanted descriptor is first copied above the
        // target range, so no dup2 overwrites a descriptor still to be placed.
        unsafe {
            cmd.pre_exec(move || {
                let base = 3 + wanted.len() as RawFd;
                let mut high = Vec::with_capacity(wanted.len());
                for &fd in &wanted {
                    let h = libc::fcntl(fd, libc::F_DUPFD, base + 16);
                    if h < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    high.push(h);
                }
                for (i, &h) in high.iter().enumerate() {
                    // dup2 clears close-on-exec on the new descriptor.
                    if libc::dup2(h, 3 + i as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(h);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| RpcError::Start {
            criu: criu.display().to_string(),
            source,
        })?;
        drop(theirs);
        Ok(Session {
            child: Some(child),
            sock: Some(ours),
        })
    }

    /// CRIU's pid (None once taken by [`Session::call_until_notified`]).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn fd(&self) -> Result<RawFd, RpcError> {
        self.sock
            .as_ref()
            .map(|s| s.as_raw_fd())
            .ok_or(RpcError::Closed)
    }

    /// Closes our end: CRIU waiting for a message sees EOF and exits.
    fn close(&mut self) {
        self.sock.take();
    }

    fn send(&self, req: &Req) -> Result<(), RpcError> {
        let buf = req.encode_to_vec();
        nix::sys::socket::send(self.fd()?, &buf, nix::sys::socket::MsgFlags::empty())?;
        Ok(())
    }

    /// The next message, waiting at most until `deadline`.
    fn recv(&self, deadline: Instant) -> Result<Resp, RpcError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let sock = self.sock.as_ref().ok_or(RpcError::Closed)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RpcError::TimedOut(Duration::ZERO));
            }
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                .unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let mut buf = vec![0u8; MAX_PACKET];
        let n = nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        )?;
        if n == 0 {
            return Err(RpcError::Closed);
        }
        Ok(Resp::decode(&buf[..n])?)
    }

    /// Sends `req` and answers CRIU's notifications (`on_notify` sees each script name, and
    /// may stop the request by returning an error text) until the final response, which is
    /// returned when it says success. `timeout` bounds the whole exchange; past it CRIU is
    /// not killed here (a dump killed halfway can leave the app stopped): `on_timeout` must
    /// unblock it, and the session then waits for its answer once more, for as long again.
    pub fn call(
        &mut self,
        req: &Req,
        timeout: Duration,
        mut on_notify: impl FnMut(&str, Option<i32>) -> Result<(), String>,
        on_timeout: impl FnOnce(),
    ) -> Result<Resp, RpcError> {
        let kind = ReqType::try_from(req.r#type).unwrap_or(ReqType::Empty);
        self.send(req)?;
        let mut deadline = Instant::now() + timeout;
        let mut on_timeout = Some(on_timeout);
        loop {
            let resp = match self.recv(deadline) {
                Err(RpcError::TimedOut(_)) => match on_timeout.take() {
                    Some(f) => {
                        f();
                        deadline = Instant::now() + timeout;
                        continue;
                    }
                    None => return Err(RpcError::TimedOut(timeout)),
                },
                other => other?,
            };
            if resp.r#type == ReqType::Notify as i32 {
                let n = resp.notify.clone().unwrap_or(Notify {
                    script: None,
                    pid: None,
                });
                let verdict = on_notify(n.script.as_deref().unwrap_or(""), n.pid);
                self.send(&Req {
                    r#type: ReqType::Notify as i32,
                    opts: None,
                    notify_success: Some(verdict.is_ok()),
                })?;
                if let Err(msg) = verdict {
                    return Err(RpcError::Failed {
                        request: kind,
                        errno: None,
                        msg: Some(msg),
                    });
                }
                continue;
            }
            if !resp.success {
                return Err(RpcError::Failed {
                    request: kind,
                    errno: resp.cr_errno,
                    msg: resp.cr_errmsg.clone(),
                });
            }
            return Ok(resp);
        }
    }

    /// Sends `req` and returns once CRIU notified `script` (a lazy dump's `status-ready`:
    /// its page server listens), answering every notification. The rest of the exchange
    /// (more notifications, the final answer once the target has every page) is served by
    /// a thread; the CRIU process is returned.
    pub fn call_until_notified(
        mut self,
        req: &Req,
        timeout: Duration,
        script: &str,
    ) -> Result<Child, RpcError> {
        let kind = ReqType::try_from(req.r#type).unwrap_or(ReqType::Empty);
        self.send(req)?;
        let deadline = Instant::now() + timeout;
        loop {
            let resp = self.recv(deadline).map_err(|e| match e {
                RpcError::TimedOut(_) => RpcError::TimedOut(timeout),
                e => e,
            })?;
            if resp.r#type != ReqType::Notify as i32 {
                // The final answer before the awaited step: the request ended (failed).
                return Err(RpcError::Failed {
                    request: kind,
                    errno: resp.cr_errno,
                    msg: resp
                        .cr_errmsg
                        .or_else(|| Some(format!("ended before '{script}'"))),
                });
            }
            let name = resp.notify.and_then(|n| n.script).unwrap_or_default();
            self.ack()?;
            if name == script {
                break;
            }
        }
        let child = self
            .child
            .take()
            .expect("a session has its child until taken");
        let sock = self.sock.take();
        std::thread::spawn(move || {
            let rest = Session { child: None, sock };
            // Notifications are answered until CRIU's final answer or exit; a day bounds a
            // CRIU that neither answers nor exits (its owner stops it before that).
            while let Ok(resp) = rest.recv(Instant::now() + Duration::from_secs(86_400)) {
                if resp.r#type != ReqType::Notify as i32 || rest.ack().is_err() {
                    break;
                }
            }
        });
        Ok(child)
    }

    /// Tells CRIU a notification was handled.
    fn ack(&self) -> Result<(), RpcError> {
        self.send(&Req {
            r#type: ReqType::Notify as i32,
            opts: None,
            notify_success: Some(true),
        })
    }

    /// Waits for CRIU to exit (it does after its answer to a dump or restore).
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A session dropped before its end (an error on our side): closing the socket tells
        // CRIU to give up, and it exits; wait for it so no zombie is left.
        if let Some(mut c) = self.child.take() {
            self.close();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_request_encodes_criu_field_numbers() {
        let req = Req {
            r#type: ReqType::Dump as i32,
            opts: Some(Opts {
                images_dir_fd: 5,
                pid: Some(42),
                leave_running: Some(true),
                ..Default::default()
            }),
            notify_success: None,
        };
        let bytes = req.encode_to_vec();
        // type = 1 (field 1, varint), opts (field 2, length 6): images_dir_fd = 5 (field 1),
        // pid = 42 (field 2), leave_running = 1 (field 3).
        assert_eq!(
            bytes,
            [0x08, 0x01, 0x12, 0x06, 0x08, 0x05, 0x10, 0x2a, 0x18, 0x01]
        );
        assert_eq!(Req::decode(bytes.as_slice()).unwrap(), req);
    }

    #[test]
    fn a_failed_response_keeps_criu_s_reason() {
        let resp = Resp {
            r#type: ReqType::Restore as i32,
            success: false,
            cr_errno: Some(2),
            cr_errmsg: Some("no such image".into()),
            ..Default::default()
        };
        let back = Resp::decode(resp.encode_to_vec().as_slice()).unwrap();
        assert!(!back.success);
        assert_eq!(back.cr_errmsg.as_deref(), Some("no such image"));
    }

    /// A real `criu swrk`: the version request needs no privileges beyond starting CRIU.
    #[test]
    fn criu_answers_over_its_rpc_socket() {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.deps/criu/sbin/criu");
        let Some(criu) = crate::criu::find().or_else(|| local.is_file().then_some(local)) else {
            panic!("CRIU not found: run scripts/install-deps");
        };
        let mut s = Session::start(&criu, &[]).unwrap();
        let resp = s
            .call(
                &Req {
                    r#type: ReqType::Version as i32,
                    opts: None,
                    notify_success: None,
                },
                Duration::from_secs(10),
                |_, _| Ok(()),
                || {},
            )
            .unwrap();
        assert_eq!(resp.r#type, ReqType::Version as i32);
        s.finish();
    }
}
