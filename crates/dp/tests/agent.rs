//! The agent binary on its own, without a zone (`--cp-address` points at a closed port, so it keeps
//! retrying the connection): start-up refusals and the Workload API's listener.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

const AGENT: &str = env!("CARGO_BIN_EXE_meshplane-dp");

const DATAPLANE: &str = "type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: web
";

/// A temporary directory with what `meshplane-dp run` needs, and its arguments.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("dataplane.yaml"), DATAPLANE).expect("dataplane");
        std::fs::write(dir.path().join("ca.pem"), "not used before connecting").expect("ca");
        std::fs::write(dir.path().join("token"), "not used before connecting").expect("token");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self, socket: &Path) -> Vec<String> {
        let p = |n: &str| self.path(n).display().to_string();
        vec![
            "run".into(),
            "--cp-address".into(),
            // Nothing listens on port 1: the agent retries, which is all these tests need.
            "https://127.0.0.1:1".into(),
            "--cp-ca-file".into(),
            p("ca.pem"),
            "--dataplane-file".into(),
            p("dataplane.yaml"),
            "--dataplane-token-file".into(),
            p("token"),
            "--cert-dir".into(),
            p("certs"),
            "--workload-api-socket".into(),
            socket.display().to_string(),
        ]
    }

    /// Starts the agent with its output in `agent.log`; `max_files` caps its open files.
    fn spawn(&self, socket: &Path, max_files: Option<u32>) -> Agent {
        let log = std::fs::File::create(self.path("agent.log")).expect("log");
        let mut cmd = match max_files {
            None => Command::new(AGENT),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(AGENT);
                c
            }
        };
        let child = cmd
            .args(self.args(socket))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MESHPLANE_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn meshplane-dp");
        Agent {
            child,
            log: self.path("agent.log"),
        }
    }
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the agent ends within `timeout`.
    fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn assert_running(&mut self) {
        if let Some(s) = self.child.try_wait().expect("try_wait") {
            panic!("the agent exited ({s}); log:\n{}", self.logs());
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an HTTP/2 server answers on `socket`: it sends its SETTINGS frame after the preface.
fn served(socket: &Path) -> Result<(), String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .map_err(|e| format!("write: {e}"))?;
    let mut head = [0u8; 9];
    s.read_exact(&mut head).map_err(|e| format!("read: {e}"))?;
    (head[3] == 0x4)
        .then_some(())
        .ok_or_else(|| format!("first frame is of type {}, not SETTINGS", head[3]))
}

fn wait_served(socket: &Path, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        match served(socket) {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn a_workload_api_socket_that_cannot_be_bound_stops_the_start() {
    let setup = Setup::new();
    std::fs::write(setup.path("a-file"), "").expect("file");
    let too_long = setup.path(&"s".repeat(120));
    for socket in [setup.path("a-file").join("workload.sock"), too_long] {
        let mut agent = setup.spawn(&socket, None);
        let status = agent
            .exit_within(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("still running; log:\n{}", agent.logs()));
        assert_eq!(status.code(), Some(1), "log:\n{}", agent.logs());
        let logs = agent.logs();
        assert!(
            logs.contains("--workload-api-socket"),
            "the error names the flag:\n{logs}"
        );
        assert!(
            !logs.contains("disconnected from the zone"),
            "nothing started:\n{logs}"
        );
    }
}

#[test]
fn the_workload_api_keeps_accepting_after_running_out_of_files() {
    let setup = Setup::new();
    let socket = setup.path("workload.sock");
    let mut agent = setup.spawn(&socket, Some(64));
    wait_served(&socket, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.logs()));
    // Every connection costs the agent one descriptor: far more than it may open.
    let held: Vec<UnixStream> = (0..200)
        .filter_map(|_| UnixStream::connect(&socket).ok())
        .collect();
    assert!(held.len() > 64, "only {} connections", held.len());
    let start = Instant::now();
    while !agent.logs().contains("cannot accept a connection") {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no accept error logged; log:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    agent.assert_running();
    wait_served(&socket, Duration::from_secs(15)).unwrap_or_else(|e| {
        panic!(
            "the Workload API no longer serves: {e}; log:\n{}",
            agent.logs()
        )
    });
    agent.assert_running();
}
