//! The delay element: a userspace layer-2 forwarder between two interfaces that holds every
//! frame for a fixed time before passing it on. Used where the kernel has no netem qdisc.
//!
//! Each direction has a receiving thread (AF_PACKET socket bound to one interface, stamps the
//! frame's due time) and a sending thread (waits until the frame is due, sends it out the
//! other interface). The delay is the same for every frame, so FIFO order is due-time order
//! and a plain channel is the whole queue. Rate limiting is not done here: tbf on the
//! senders' interfaces shapes the traffic before it reaches the forwarder.
//!
//! The interfaces must have checksum and segmentation offloads off (see `links`): a raw
//! socket reads frames as the sender built them, so a TSO super-frame would not fit the MTU
//! on the way out and a frame with a partial checksum would be dropped by the receiver.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Frames larger than this are dropped (MTU 1500 plus headers, with room to spare).
const MAX_FRAME: usize = 65536;
/// Frames held at once per direction: 1 Gbit/s of full frames for 1 s (memory stays bounded
/// even on an unshaped link whose sender outruns the forwarder).
const MAX_QUEUED: usize = 83_000;
/// Socket buffers: at 1 Gbit/s a 4 MiB buffer absorbs 30 ms of backlog.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DelayError {
    #[error("cannot enter network namespace {netns}: {source}")]
    Netns { netns: String, source: io::Error },
    #[error("no interface {name} in namespace {netns}")]
    NoInterface { name: String, netns: String },
    #[error("cannot open a raw socket on {name}: {source}")]
    Socket { name: String, source: io::Error },
    #[error("cannot start a forwarder thread: {0}")]
    Thread(io::Error),
}

/// One delay element: frames between interfaces `a` and `b` of namespace `netns` are held
/// for `delay` each way.
#[derive(Debug, Clone)]
pub struct DelaySpec {
    pub netns: String,
    pub a: String,
    pub b: String,
    pub delay: Duration,
}

/// Opens the sockets inside the namespace and starts the four threads. They run until the
/// process exits (the testbed agent owns them).
pub fn start(spec: &DelaySpec) -> Result<(), DelayError> {
    let (sa, sb) = open_pair(spec)?;
    let sa = std::sync::Arc::new(sa);
    let sb = std::sync::Arc::new(sb);
    pump(
        &format!("{}>{}", spec.a, spec.b),
        sa.clone(),
        sb.clone(),
        spec.delay,
    )?;
    pump(&format!("{}>{}", spec.b, spec.a), sb, sa, spec.delay)?;
    Ok(())
}

/// Opens both sockets from a short-lived thread that enters the namespace: `setns` only
/// moves the calling thread, and a socket stays in the namespace it was created in.
fn open_pair(spec: &DelaySpec) -> Result<(OwnedFd, OwnedFd), DelayError> {
    let spec = spec.clone();
    std::thread::Builder::new()
        .name("delay-open".into())
        .spawn(move || {
            enter_netns(&spec.netns)?;
            Ok((
                open_socket(&spec.a, &spec.netns)?,
                open_socket(&spec.b, &spec.netns)?,
            ))
        })
        .map_err(DelayError::Thread)?
        .join()
        .unwrap_or_else(|_| {
            Err(DelayError::Thread(io::Error::other(
                "opener thread panicked",
            )))
        })
}

fn enter_netns(netns: &str) -> Result<(), DelayError> {
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).map_err(|source| DelayError::Netns {
        netns: netns.to_string(),
        source,
    })?;
    // SAFETY: setns on a valid open namespace fd; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(DelayError::Netns {
            netns: netns.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn open_socket(name: &str, netns: &str) -> Result<OwnedFd, DelayError> {
    let err = |source: io::Error| DelayError::Socket {
        name: name.to_string(),
        source,
    };
    let cname = std::ffi::CString::new(name).map_err(|_| DelayError::NoInterface {
        name: name.to_string(),
        netns: netns.to_string(),
    })?;
    // SAFETY: if_nametoindex reads a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(DelayError::NoInterface {
            name: name.to_string(),
            netns: netns.to_string(),
        });
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
    if fd < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Frames we send on this interface would otherwise come back to us as outgoing ones.
    setsockopt(&sock, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1).map_err(err)?;
    // FORCE variants: we run as root, and the defaults (~200 KiB) drop frames at 1 Gbit/s.
    setsockopt(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER).map_err(err)?;
    setsockopt(&sock, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER).map_err(err)?;
    // Kernel receive time of each frame (see receive_loop).
    setsockopt(&sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).map_err(err)?;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: addr is a valid sockaddr_ll and the length matches it.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(sock)
}

fn setsockopt(
    sock: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: value lives across the call and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One direction: receive on `from`, hold for `delay`, send on `to`.
fn pump(
    label: &str,
    from: std::sync::Arc<OwnedFd>,
    to: std::sync::Arc<OwnedFd>,
    delay: Duration,
) -> Result<(), DelayError> {
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(MAX_QUEUED);
    std::thread::Builder::new()
        .name(format!("rx {label}"))
        .spawn(move || receive_loop(&from, &tx, delay))
        .map_err(DelayError::Thread)?;
    std::thread::Builder::new()
        .name(format!("tx {label}"))
        .spawn(move || send_loop(&to, &rx))
        .map_err(DelayError::Thread)?;
    Ok(())
}

fn receive_loop(sock: &OwnedFd, tx: &mpsc::SyncSender<(Instant, Vec<u8>)>, delay: Duration) {
    let mut buf = vec![0u8; MAX_FRAME];
    // Room for one SCM_TIMESTAMPNS control message (a timespec), with alignment to spare.
    let mut control = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid starting value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at buffers that live across the call, with their real sizes.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The interface went away (testbed coming down): stop this direction.
            tracing::debug!(error = %e, "delay: receive failed, stopping");
            return;
        }
        // The frame is due `delay` after the kernel received it, not after this thread woke
        // up: the wake-up latency would otherwise add to every frame's delay.
        let now = Instant::now();
        let waited = kernel_age(&msg).unwrap_or_default().min(delay);
        let due = now + (delay - waited);
        match tx.try_send((due, buf[..n as usize].to_vec())) {
            Ok(()) => {}
            // The line is full: drop the frame (tail drop), as a router queue would.
            Err(mpsc::TrySendError::Full(_)) => {}
            Err(mpsc::TrySendError::Disconnected(_)) => return,
        }
    }
}

/// How long ago the kernel stamped the frame (SO_TIMESTAMPNS, CLOCK_REALTIME).
fn kernel_age(msg: &libc::msghdr) -> Option<Duration> {
    // SAFETY: msg was filled by recvmsg; the CMSG macros walk its control buffer within
    // msg_controllen.
    let ts = unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        let mut found = None;
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                found = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c) as *const libc::timespec
                ));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
        found?
    };
    let stamped = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    now.checked_sub(stamped)
}

fn send_loop(sock: &OwnedFd, rx: &mpsc::Receiver<(Instant, Vec<u8>)>) {
    // The default timer slack (50 us) would add to every frame's delay; 1 ns makes the
    // sleep end on time (costs a few more wake-ups, not busy-waiting).
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    // How late sleeps end, on average (an EWMA in ns): the next sleep ends that much earlier,
    // so frames leave at their due time rather than after it.
    let mut late_ns: u64 = 0;
    while let Ok((due, frame)) = rx.recv() {
        let now = Instant::now();
        let target = due
            .checked_sub(Duration::from_nanos(late_ns))
            .unwrap_or(due);
        if target > now {
            std::thread::sleep(target - now);
            let woke = Instant::now();
            let late = woke
                .saturating_duration_since(target)
                .as_nanos()
                .min(1_000_000) as u64;
            late_ns = (late_ns * 7 + late) / 8;
        }
        // SAFETY: frame is valid for frame.len() bytes for the duration of the call.
        let n = unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // A full queue or a frame too large: drop it, as a real link would.
                Some(libc::ENOBUFS) | Some(libc::EMSGSIZE) | Some(libc::EAGAIN) => continue,
                _ => {
                    tracing::debug!(error = %e, "delay: send failed, stopping");
                    return;
                }
            }
        }
    }
}
