//! Seccomp filters of a target thread, read with `PTRACE_SECCOMP_GET_FILTER` and run here on
//! the system calls lpkg injects, before the first of them: a sandboxed service (systemd's
//! `SystemCallFilter=`) whose filter kills on `memfd_create` would otherwise die of SIGSYS
//! in the middle of an apply.
//!
//! A filter is classic BPF over `struct seccomp_data`; the kernel runs every filter of the
//! thread and takes the most restrictive answer. lpkg goes on only if every filter allows
//! (or only logs) every call it may inject, evaluated with the arguments lpkg passes.
//! Filters that look at addresses or lengths are evaluated with typical ones.

use crate::arch::Arch;
use crate::{Error, Pid, Result};

/// `PTRACE_SECCOMP_GET_FILTER` (linux/ptrace.h).
const GET_FILTER: libc::c_uint = 0x420c;
/// The most instructions a filter has (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;
/// `SECCOMP_RET_ACTION_FULL`, and the two answers that let a call run.
const ACTION: u32 = 0xffff_0000;
const ALLOW: u32 = 0x7fff_0000;
const LOG: u32 = 0x7ffc_0000;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// The seccomp mode of thread `tid` of `pid` (`Seccomp:` in its status: 0 none, 1 strict,
/// 2 filter); 0 when it cannot be read.
pub(crate) fn mode(pid: Pid, tid: Pid) -> u32 {
    crate::procfs::read_text(std::path::Path::new(&format!(
        "/proc/{pid}/task/{tid}/status"
    )))
    .ok()
    .and_then(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .and_then(|v| v.trim().parse().ok())
    })
    .unwrap_or(0)
}

/// The filters of thread `tid`, which must be in a ptrace-stop of ours.
fn filters(pid: Pid, tid: Pid) -> Result<Vec<Vec<Insn>>> {
    let failed = |what: &str| Error::Proc {
        path: format!("/proc/{pid}/task/{tid} seccomp filters: {what}").into(),
        source: std::io::Error::last_os_error(),
    };
    let mut all = Vec::new();
    for index in 0.. {
        // SAFETY: with a null buffer the kernel only returns the filter's length.
        let len = unsafe {
            libc::ptrace(
                GET_FILTER,
                tid,
                index as libc::c_ulong,
                std::ptr::null_mut::<u8>(),
            )
        };
        if len < 0 {
            // ENOENT: no filter at this index, all were read.
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) && index > 0 {
                break;
            }
            return Err(failed("PTRACE_SECCOMP_GET_FILTER"));
        }
        let len = (len as usize).min(MAX_INSNS);
        let mut raw = vec![[0u8; 8]; len];
        // SAFETY: `raw` has room for `len` instructions of 8 bytes, what the kernel writes
        // (the filter cannot change: filters are never modified once installed).
        let got = unsafe {
            libc::ptrace(
                GET_FILTER,
                tid,
                index as libc::c_ulong,
                raw.as_mut_ptr().cast::<u8>(),
            )
        };
        if got < 0 {
            return Err(failed("PTRACE_SECCOMP_GET_FILTER"));
        }
        all.push(
            raw.iter()
                .map(|b| Insn {
                    code: u16::from_ne_bytes([b[0], b[1]]),
                    jt: b[2],
                    jf: b[3],
                    k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
                })
                .collect(),
        );
        if all.len() >= 64 {
            break; // More than any sandbox stacks; the rest would only restrict further.
        }
    }
    Ok(all)
}

/// What `filter` answers for `data` (a `struct seccomp_data`); 0 (kill the thread), as the
/// kernel would, for a program that runs off its end.
fn run(filter: &[Insn], data: &[u8; 64]) -> u32 {
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let word = |k: u32| {
        let k = k as usize;
        data.get(k..k + 4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut pc = 0usize;
    while let Some(insn) = filter.get(pc) {
        pc += 1;
        let k = insn.k;
        let src = if insn.code & 0x08 != 0 { x } else { k };
        match insn.code & 0x07 {
            // LD / LDX: W|ABS, W|LEN, IMM, MEM are what seccomp accepts.
            class @ (0x00 | 0x01) => {
                let value = match insn.code & 0xe0 {
                    0x20 => word(k),
                    0x80 => 64,
                    0x60 => mem[(k & 15) as usize],
                    _ => k,
                };
                if class == 0x00 {
                    a = value;
                } else {
                    x = value;
                }
            }
            0x02 => mem[(k & 15) as usize] = a,
            0x03 => mem[(k & 15) as usize] = x,
            0x04 => {
                a = match insn.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 => a.checked_div(src).unwrap_or(0),
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => a.checked_rem(src).unwrap_or(0),
                    0xa0 => a ^ src,
                    _ => return 0,
                }
            }
            0x05 => {
                let taken = match insn.code & 0xf0 {
                    0x00 => {
                        pc += k as usize;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    _ => return 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            0x06 => return if insn.code & 0x18 == 0x10 { a } else { k },
            _ => {
                if insn.code & 0xf8 == 0x80 {
                    a = x;
                } else {
                    x = a;
                }
            }
        }
    }
    0
}

/// `struct seccomp_data` for system call `nr` with `args`, made at `ip`.
fn data(arch: Arch, nr: u64, ip: u64, args: [u64; 6]) -> [u8; 64] {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&(nr as u32).to_ne_bytes());
    data[4..8].copy_from_slice(&arch.audit_arch().to_ne_bytes());
    data[8..16].copy_from_slice(&ip.to_ne_bytes());
    for (i, arg) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
    }
    data
}

/// What an answer does to the call, for people.
fn effect(answer: u32) -> String {
    match answer & ACTION {
        0x8000_0000 => "kill the process".into(),
        0 => "kill the thread".into(),
        0x0003_0000 => "send it SIGSYS".into(),
        0x0005_0000 => format!("fail it with errno {}", answer & 0xffff),
        0x7fc0_0000 => "hand it to a user-space supervisor".into(),
        0x7ff0_0000 => "hand it to a seccomp tracer".into(),
        other => format!("answer {other:#x}"),
    }
}

/// Checks that the seccomp filters of thread `tid` (stopped) let every system call lpkg
/// injects run. `ip`: where lpkg's system calls are made from.
pub(crate) fn check(
    pid: Pid,
    tid: Pid,
    ip: impl FnOnce() -> Result<u64>,
    arch: Arch,
) -> Result<()> {
    match mode(pid, tid) {
        0 => return Ok(()),
        1 => {
            return Err(Error::Sandboxed {
                pid,
                reason: "it runs in strict seccomp mode (only read, write, exit and sigreturn)"
                    .into(),
            })
        }
        _ => {}
    }
    let filters = filters(pid, tid)?;
    let ip = ip()?;
    for (name, nr, args) in arch.injected_calls() {
        let data = data(arch, *nr, ip, *args);
        for filter in &filters {
            let answer = run(filter, &data);
            if !matches!(answer & ACTION, ALLOW | LOG) {
                return Err(Error::Sandboxed {
                    pid,
                    reason: format!(
                        "its seccomp filter would {} on {name}, a system call lpkg makes in it",
                        effect(answer)
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// The filter of the test targets: right arch, then syscall `nr` gets `action`.
    fn deny(arch: Arch, nr: u32, action: u32) -> Vec<Insn> {
        vec![
            insn(0x20, 0, 0, 4),
            insn(0x15, 1, 0, arch.audit_arch()),
            insn(0x06, 0, 0, 0x8000_0000),
            insn(0x20, 0, 0, 0),
            insn(0x15, 0, 1, nr),
            insn(0x06, 0, 0, action),
            insn(0x06, 0, 0, ALLOW),
        ]
    }

    #[test]
    fn a_filter_answers_as_the_kernel_would() {
        let filter = deny(Arch::X86_64, 319, 0x8000_0000);
        assert_eq!(
            run(&filter, &data(Arch::X86_64, 319, 0, [0; 6])),
            0x8000_0000
        );
        assert_eq!(run(&filter, &data(Arch::X86_64, 9, 0, [0; 6])), ALLOW);
        // Another architecture's call is killed by the arch check.
        let mut other = data(Arch::X86_64, 9, 0, [0; 6]);
        other[4..8].copy_from_slice(&0x4000_0003u32.to_ne_bytes());
        assert_eq!(run(&filter, &other), 0x8000_0000);
        // Running off the end, or a jump past it, kills.
        assert_eq!(
            run(&[insn(0x20, 0, 0, 0)], &data(Arch::X86_64, 9, 0, [0; 6])),
            0
        );
        assert_eq!(
            run(&[insn(0x05, 0, 0, 100)], &data(Arch::X86_64, 9, 0, [0; 6])),
            0
        );
        // Arguments: deny mprotect with PROT_EXEC (args[2] & 4).
        let no_exec = vec![
            insn(0x20, 0, 0, 0),
            insn(0x15, 0, 3, 10),
            insn(0x20, 0, 0, 32),
            insn(0x45, 0, 1, 4),
            insn(0x06, 0, 0, 0x0005_0001),
            insn(0x06, 0, 0, ALLOW),
        ];
        assert_eq!(
            run(&no_exec, &data(Arch::X86_64, 10, 0, [0, 0, 5, 0, 0, 0])),
            0x0005_0001
        );
        assert_eq!(
            run(&no_exec, &data(Arch::X86_64, 10, 0, [0, 0, 3, 0, 0, 0])),
            ALLOW
        );
        assert_eq!(effect(0x0005_0001), "fail it with errno 1");
    }

    #[test]
    fn a_compat_thread_is_checked_with_i386_numbers() {
        let filter = deny(Arch::I386, 356, 0); // memfd_create kills the thread
        let answers: Vec<(&str, u32)> = Arch::I386
            .injected_calls()
            .iter()
            .map(|(name, nr, args)| (*name, run(&filter, &data(Arch::I386, *nr, 0, *args))))
            .collect();
        assert!(
            answers
                .iter()
                .all(|&(name, answer)| (name == "memfd_create") == (answer == 0)),
            "{answers:?}"
        );
        // Made the x86_64 way, every call would die on the filter's arch check.
        for (_, nr, args) in Arch::X86_64.injected_calls() {
            assert_eq!(
                run(&filter, &data(Arch::X86_64, *nr, 0, *args)),
                0x8000_0000
            );
        }
    }

    #[test]
    fn odd_programs_never_panic() {
        let codes = [
            0x00u16, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x20, 0x28, 0x30, 0x34, 0x3c, 0x45,
            0x60, 0x61, 0x80, 0x87, 0x94, 0x9c, 0xa4, 0xfe, 0xffff,
        ];
        for &code in &codes {
            for k in [0, 1, 15, 16, 63, 64, 0xffff_ffff] {
                let program = [insn(code, 255, 255, k), insn(0x06, 0, 0, ALLOW)];
                let _ = run(&program, &data(Arch::X86_64, 1, 2, [3; 6]));
            }
        }
    }
}
