//! Exec events from the kernel's process connector (netlink `NETLINK_CONNECTOR`, group
//! `CN_IDX_PROC`): how `lpkg daemon` learns of a process the moment it starts a program. Needs
//! CAP_NET_ADMIN. The kernel drops events when the socket's buffer is full; that is reported
//! as [`Events::Overrun`], after which the caller must look at every process again.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::{Error, Pid, Result};

/// `CN_IDX_PROC` and `CN_VAL_PROC` (linux/connector.h): the process connector's id.
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `PROC_CN_MCAST_LISTEN` (linux/cn_proc.h).
const MCAST_LISTEN: u32 = 1;
/// `PROC_EVENT_EXEC` (linux/cn_proc.h).
const EVENT_EXEC: u32 = 2;
/// `NLMSG_DONE`: the type of every message the connector sends.
const NLMSG_DONE: u16 = 3;
/// Sizes of `struct nlmsghdr` and `struct cn_msg`.
const NLMSG_HEADER: usize = 16;
const CN_HEADER: usize = 20;
/// Offsets in `struct proc_event` of `what`, and of `exec.process_tgid` (after `cpu`, the
/// 8-byte timestamp and `process_pid`).
const WHAT: usize = 0;
const EXEC_TGID: usize = 20;

/// What one wait brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Events {
    /// Processes that started a new program (process ids), possibly none.
    Exec(Vec<Pid>),
    /// Events were lost: look at every process again.
    Overrun,
}

/// A socket subscribed to the process connector.
#[derive(Debug)]
pub struct ExecEvents {
    socket: OwnedFd,
}

impl ExecEvents {
    /// Subscribes to the process connector.
    pub fn open() -> Result<ExecEvents> {
        let failed = |what: &str| Error::Proc {
            path: format!("process connector: {what}").into(),
            source: std::io::Error::last_os_error(),
        };
        // SAFETY: socket takes three integers and returns a new descriptor or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if fd < 0 {
            return Err(failed("socket"));
        }
        // SAFETY: `fd` was just returned to us and is owned by nothing else.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all zeros is a valid value.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = CN_IDX_PROC;
        // SAFETY: `address` is a valid sockaddr_nl and its size is given.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&address as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(failed("bind"));
        }
        let message = listen_message();
        // SAFETY: sends `message.len()` bytes from a live buffer.
        let sent = unsafe {
            libc::send(
                socket.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        };
        if sent != message.len() as isize {
            return Err(failed("subscribe (needs CAP_NET_ADMIN)"));
        }
        Ok(ExecEvents { socket })
    }

    /// Waits up to `timeout` for events; returns the exec events that came (none after a
    /// timeout or a signal).
    pub fn wait(&self, timeout: Duration) -> Result<Events> {
        let mut poll = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Rounded up: a wait of less than a millisecond must not turn into a spin.
        let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd; poll only reads and writes it.
        if unsafe { libc::poll(&mut poll, 1, millis) } <= 0 {
            return Ok(Events::Exec(Vec::new()));
        }
        let mut pids = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            // SAFETY: receives at most `buffer.len()` bytes into a live buffer.
            let len = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if len < 0 {
                let error = std::io::Error::last_os_error();
                return match error.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Events::Exec(pids)),
                    Some(libc::ENOBUFS) => Ok(Events::Overrun),
                    _ => Err(Error::Proc {
                        path: "process connector: recv".into(),
                        source: error,
                    }),
                };
            }
            pids.extend(exec_pids(&buffer[..len as usize]));
        }
    }
}

/// The message that subscribes a socket: nlmsghdr, cn_msg, `PROC_CN_MCAST_LISTEN`.
fn listen_message() -> Vec<u8> {
    let len = NLMSG_HEADER + CN_HEADER + 4;
    let mut message = Vec::with_capacity(len);
    message.extend((len as u32).to_ne_bytes());
    message.extend(NLMSG_DONE.to_ne_bytes());
    message.extend(0u16.to_ne_bytes()); // flags
    message.extend(0u32.to_ne_bytes()); // sequence
    message.extend(std::process::id().to_ne_bytes());
    message.extend(CN_IDX_PROC.to_ne_bytes());
    message.extend(CN_VAL_PROC.to_ne_bytes());
    message.extend(0u32.to_ne_bytes()); // sequence
    message.extend(0u32.to_ne_bytes()); // ack
    message.extend(4u16.to_ne_bytes()); // data length
    message.extend(0u16.to_ne_bytes()); // flags
    message.extend(MCAST_LISTEN.to_ne_bytes());
    message
}

/// The process ids of the exec events in one datagram (one or more netlink messages). What
/// does not parse is skipped: the kernel wrote it, but a short or odd message costs nothing.
pub fn exec_pids(datagram: &[u8]) -> Vec<Pid> {
    let u32_at = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut pids = Vec::new();
    let mut rest = datagram;
    while let Some(len) = u32_at(rest, 0) {
        let len = len as usize;
        if len < NLMSG_HEADER || len > rest.len() {
            break;
        }
        let message = &rest[..len];
        let event = message.get(NLMSG_HEADER + CN_HEADER..).unwrap_or_default();
        if u32_at(event, WHAT) == Some(EVENT_EXEC) {
            if let Some(tgid) = u32_at(event, EXEC_TGID) {
                pids.push(tgid as Pid);
            }
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_the_exec_of_a_child() {
        let events = ExecEvents::open().expect("the process connector (root)");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as Pid;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = false;
        while !seen && std::time::Instant::now() < deadline {
            match events.wait(Duration::from_millis(100)).unwrap() {
                Events::Exec(pids) => seen = pids.contains(&pid),
                Events::Overrun => {}
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen, "no exec event for {pid}");
    }

    #[test]
    fn odd_datagrams_give_nothing() {
        assert_eq!(exec_pids(&[]), Vec::<Pid>::new());
        assert_eq!(exec_pids(&[0xff; 3]), Vec::<Pid>::new());
        assert_eq!(exec_pids(&[0; 64]), Vec::<Pid>::new());
        let mut message = vec![0u8; 64];
        message[..4].copy_from_slice(&64u32.to_ne_bytes());
        message[36..40].copy_from_slice(&EVENT_EXEC.to_ne_bytes());
        message[56..60].copy_from_slice(&1234u32.to_ne_bytes());
        assert_eq!(exec_pids(&message), vec![1234]);
        message[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(exec_pids(&message), Vec::<Pid>::new());
    }
}
