//! The service binary as a child process, configured by environment.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Variables the service reads; cleared so the test's environment does not leak in.
const SERVICE_VARS: [&str; 8] = [
    "LISTEN_ADDR",
    "DATABASE_URL",
    "NATS_URL",
    "NATS_STREAM",
    "NATS_SUBJECT_PREFIX",
    "OUTBOX_PARTITIONS",
    "OUTBOX_LEASE_MS",
    "RUST_LOG",
];

/// A running `orders-service` process.
pub struct Service {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// The thread copying stderr into `logs`; it ends at the process's exit.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Starts the service on a free port with `env` and waits until it
    /// listens (its "listening on" log line), at most 60 s.
    pub async fn start(env: &[(&str, String)]) -> Service {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orders-service"));
        for var in SERVICE_VARS {
            command.env_remove(var);
        }
        command
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn orders-service");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = addr_tx.send(rest.trim().to_owned());
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let started = Instant::now();
        let mut service = Service {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
            reader: Some(reader),
        };
        loop {
            if let Ok(addr) = addr_rx.try_recv() {
                service.addr = addr.parse().expect("listening address");
                return service;
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "orders-service exited with {status} before listening:\n{}",
                    service.logs()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "orders-service did not listen within 60 s:\n{}",
                service.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the service logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }

    /// Whether a log line contains every one of `needles`.
    pub fn logged(&self, needles: &[&str]) -> bool {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .any(|line| needles.iter().all(|n| line.contains(n)))
    }

    /// SIGKILL: no shutdown, no drain, leases left to expire.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL orders-service");
        self.child.wait().expect("reap orders-service");
        self.join_reader();
    }

    /// Waits until every line the exited process wrote is in `logs`.
    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// SIGTERM, then waits (at most 60 s) for the process to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.join_reader();
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "orders-service did not exit within 60 s of SIGTERM:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
