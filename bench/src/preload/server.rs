//! The server row: Debian's `redis-server` under the column's `LD_PRELOAD`
//! (on the server's command line only) on a free 127.0.0.1 port, driven by
//! `redis-benchmark` under glibc. The sample is the client's requests over
//! its per-test times and the server's `wait4` rusage (peak RSS, faults).
//!
//! The harness always stops the server it started, error or not: a
//! [`Server`] sends SIGTERM when it is stopped or dropped (also on a panic),
//! SIGKILL after a grace period, and reaps it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::runner;
use crate::worker::Sample;

/// How long the server may take to answer `PING`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Clone, Debug)]
pub struct RedisRun<'a> {
    /// `redis-server`.
    pub server: &'a Path,
    /// `redis-benchmark`.
    pub client: &'a Path,
    /// The client's arguments (must hold `-n N`); `-h`, `-p` and `--csv`
    /// are added.
    pub client_args: &'a [&'a str],
    /// The server's `LD_PRELOAD` (`None`: glibc).
    pub preload: Option<&'a Path>,
    /// Working directory and log of the server.
    pub dir: &'a Path,
}

/// One run: start, wait until it answers, drive it, stop it.
pub fn run(r: &RedisRun, timeout: Duration) -> Result<Sample, String> {
    let n = requests(r.client_args)?;
    let port = free_port()?;
    let log = r.dir.join(format!("redis-{port}.log"));
    let mut cmd = Command::new(r.server);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        // In memory only: no snapshot, no append-only file, nothing left in
        // the working directory.
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(r.dir)
        .current_dir(r.dir);
    match r.preload {
        Some(p) => cmd.env("LD_PRELOAD", p),
        None => cmd.env_remove("LD_PRELOAD"),
    };
    let server = Server::start(cmd, &log)?;
    server.wait_ready(port, READY_TIMEOUT)?;

    let mut client = Command::new(r.client);
    client
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(r.client_args)
        .arg("--csv")
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null());
    let done =
        runner::run_child(client, timeout).map_err(|e| format!("{}: {e}", r.client.display()))?;
    let stopped = server.stop(STOP_GRACE);
    done.check()
        .map_err(|e| format!("{}: {e}", r.client.display()))?;
    let ru = stopped?;
    let (ops, secs) = parse_csv(&done.stdout, n)?;
    let _ = std::fs::remove_file(&log);
    Ok(Sample {
        ops,
        secs,
        maxrss_kib: ru.maxrss_kib,
        minflt: ru.minflt,
    })
}

/// The `N` of the client's `-n N`.
fn requests(args: &[&str]) -> Result<u64, String> {
    let i = args
        .iter()
        .position(|a| *a == "-n")
        .ok_or("redis-benchmark arguments have no -n")?;
    args.get(i + 1)
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("redis-benchmark -n needs a positive count: {args:?}"))
}

/// A port on 127.0.0.1 that nothing listens on now (the kernel's pick).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// `(ops, secs)` of redis-benchmark's `--csv` output: every test ran `n`
/// requests at its `rps`, so the time is the sum of `n / rps`.
pub fn parse_csv(stdout: &str, n: u64) -> Result<(u64, f64), String> {
    let mut ops = 0;
    let mut secs = 0.0;
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split("\",\"").map(|f| f.trim_matches('"')).collect();
        if fields.first() == Some(&"test") {
            continue;
        }
        let rps: f64 = fields
            .get(1)
            .and_then(|v| v.parse().ok())
            .filter(|v: &f64| *v > 0.0 && v.is_finite())
            .ok_or_else(|| format!("redis-benchmark: no requests/s in {line:?}"))?;
        ops += n;
        secs += n as f64 / rps;
    }
    if ops == 0 {
        return Err(format!("redis-benchmark printed no test: {stdout:?}"));
    }
    Ok((ops, secs))
}

/// What the server's `wait4` gave.
#[derive(Clone, Copy, Debug)]
struct Usage {
    maxrss_kib: u64,
    minflt: u64,
}

/// A started server: reaped by its own thread, so its pid stays ours
/// until that thread has sent the status.
struct Server {
    pid: libc::pid_t,
    exited: mpsc::Receiver<(i32, libc::rusage)>,
    log: PathBuf,
    reaped: bool,
}

impl Server {
    fn start(mut cmd: Command, log: &Path) -> Result<Server, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
        let pid = child.id() as libc::pid_t;
        // Reaped below: dropping a `Child` neither waits nor kills.
        drop(child);
        let (tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value of the plain C struct.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `pid` is our child and only this thread reaps it;
            // `status` and `ru` are valid for writes.
            let got = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            if got == pid {
                let _ = tx.send((status, ru));
            }
        });
        Ok(Server {
            pid,
            exited,
            log: log.to_path_buf(),
            reaped: false,
        })
    }

    /// Waits until the server answers `PING` on `port`; an error if it
    /// exits first or does not answer within `limit`.
    fn wait_ready(&self, port: u16, limit: Duration) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((status, _)) = self.exited.try_recv() {
                return Err(format!(
                    "the server exited before accepting connections ({}): {}",
                    describe(status),
                    self.log_tail()
                ));
            }
            if ping(&addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server did not answer PING on 127.0.0.1:{port} within {} s: {}",
                    limit.as_secs(),
                    self.log_tail()
                ));
            }
            // Polling a server that is still starting.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, SIGKILL after `grace`, reap; an error if it had to be
    /// killed or did not exit cleanly.
    fn stop(mut self, grace: Duration) -> Result<Usage, String> {
        let r = self.terminate(grace);
        self.reaped = true;
        r
    }

    fn terminate(&mut self, grace: Duration) -> Result<Usage, String> {
        // Not reaped yet unless the channel holds the status, so `pid` is
        // still our child (or a zombie of it).
        let early = self.exited.try_recv().ok();
        let (status, ru, killed) = match early {
            Some((s, ru)) => (s, ru, false),
            None => {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(self.pid, libc::SIGTERM) };
                match self.exited.recv_timeout(grace) {
                    Ok((s, ru)) => (s, ru, false),
                    Err(_) => {
                        // SAFETY: as above; not reaped (nothing was sent).
                        unsafe { libc::kill(self.pid, libc::SIGKILL) };
                        let (s, ru) = self
                            .exited
                            .recv()
                            .map_err(|_| "the server's reaper thread ended".to_string())?;
                        (s, ru, true)
                    }
                }
            }
        };
        if killed {
            return Err(format!(
                "the server did not exit within {} s of SIGTERM (killed): {}",
                grace.as_secs(),
                self.log_tail()
            ));
        }
        if early.is_some() {
            return Err(format!(
                "the server exited during the run ({}): {}",
                describe(status),
                self.log_tail()
            ));
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(format!(
                "the server's shutdown failed ({}): {}",
                describe(status),
                self.log_tail()
            ));
        }
        Ok(Usage {
            maxrss_kib: ru.ru_maxrss as u64, // KiB on Linux
            minflt: ru.ru_minflt as u64,
        })
    }

    /// The last lines of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
        format!("{} (log {})", tail.trim(), self.log.display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.terminate(STOP_GRACE);
        }
    }
}

/// How a wait status ended.
fn describe(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    }
}

/// One `PING` on a fresh connection: `+PONG` back.
fn ping(addr: &SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_gives_requests_over_the_summed_test_times() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\"\n\
                   \"SET\",\"1000.00\",\"0.8\"\n\
                   \"LRANGE_100 (first 100 elements)\",\"250.0\",\"4.0\"\n";
        let (ops, secs) = parse_csv(out, 500).unwrap();
        assert_eq!(ops, 1000);
        assert!((secs - 2.5).abs() < 1e-9, "{secs}");
        assert!(parse_csv("\"test\",\"rps\"\n", 5).is_err());
        assert!(parse_csv("\"SET\",\"zero\"\n", 5)
            .unwrap_err()
            .contains("SET"));
        assert!(parse_csv("\"SET\",\"0\"\n", 5).is_err());
    }

    #[test]
    fn the_request_count_comes_from_dash_n() {
        assert_eq!(requests(&["-P", "16", "-n", "2000"]), Ok(2000));
        assert!(requests(&["-P", "16"]).unwrap_err().contains("-n"));
        assert!(requests(&["-n", "0"]).is_err());
        assert!(requests(&["-n"]).is_err());
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("preload-server-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A `Server` running `sh -c script`, its log in a fresh directory.
    fn sh_server(tag: &str, script: &str) -> (Server, PathBuf) {
        let d = dir(tag);
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        (Server::start(cmd, &d.join("log")).unwrap(), d)
    }

    fn alive(pid: libc::pid_t) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[test]
    fn a_server_that_exits_at_start_is_a_clear_error() {
        let (s, d) = sh_server("exits", "echo cannot bind >&2; exit 7");
        let e = s
            .wait_ready(free_port().unwrap(), READY_TIMEOUT)
            .unwrap_err();
        assert!(
            e.contains("exited before") && e.contains("exit status 7") && e.contains("cannot bind"),
            "{e}"
        );
        drop(s);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_server_is_stopped_and_reaped_when_dropped() {
        // Never listens: the readiness check gives up; the drop stops it.
        let (s, d) = sh_server("drop", "exec sleep 600");
        let pid = s.pid;
        assert!(alive(pid));
        let e = s
            .wait_ready(free_port().unwrap(), Duration::from_millis(100))
            .unwrap_err();
        assert!(e.contains("did not answer PING"), "{e}");
        drop(s);
        assert!(!alive(pid), "the server outlived its Server");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_stopped_server_gives_its_rusage() {
        // Exits 0 on SIGTERM, as redis-server's shutdown does; says when
        // its trap is in place.
        let (s, d) = sh_server(
            "stop",
            "trap 'exit 0' TERM; echo ready; while :; do sleep 1; done",
        );
        while !std::fs::read_to_string(&s.log).unwrap().contains("ready") {
            std::thread::yield_now();
        }
        let u = s.stop(STOP_GRACE).unwrap();
        assert!(u.maxrss_kib > 0, "{u:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
