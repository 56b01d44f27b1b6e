//! The peak memory of a child process, measured without timing: `switchyard` run to its end
//! and reaped with `wait4`, whose `ru_maxrss` is that one child's peak resident set size.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// Runs `switchyard` with `args` to its end; its exit status, standard output and peak
/// resident set size in bytes (`ru_maxrss` of this one child, from `wait4`).
pub fn run_measured(binary: &str, args: &[&str], temp: &std::path::Path) -> (i32, String, u64) {
    let mut child = Command::new(binary)
        .args(args)
        .env("TMPDIR", temp)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("switchyard runs");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    // The child is reaped: `Child` must not wait for it again.
    std::mem::forget(child);
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    (code, stdout, usage.ru_maxrss as u64 * 1024)
}
