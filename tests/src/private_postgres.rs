//! A PostgreSQL cluster of the test's own, in a temp directory on a free
//! port, that a test may crash (`pg_ctl stop -m immediate`) and restart
//! without disturbing the shared server every other test uses.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway cluster: initdb'd on creation, stopped and removed on drop.
pub struct PrivateCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    settings: Vec<String>,
}

/// The newest installed server's binaries (`/usr/lib/postgresql/<v>/bin`).
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a server binary, as the `postgres` user when this process is root
/// (initdb and the server refuse to run as root).
fn run(bin: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let program = bin.join(program);
    let mut command = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    let out = command
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    listener.local_addr().ok().map(|a| a.port())
}

impl PrivateCluster {
    /// Creates and starts a cluster with extra `-c name=value` settings, or
    /// returns `None` after saying loudly why it cannot (a panic under
    /// `OUTBOX_REQUIRE_ALL_BACKENDS=1`).
    pub fn start(case: &str, settings: &[&str]) -> Option<Self> {
        match Self::try_start(settings) {
            Ok(cluster) => Some(cluster),
            Err(why) => {
                outbox_test_support::skip(
                    case,
                    &format!("cannot run a private PostgreSQL cluster: {why}"),
                );
                None
            }
        }
    }

    fn try_start(settings: &[&str]) -> Result<Self, String> {
        let bin = server_bin().ok_or("no PostgreSQL server binaries under /usr/lib/postgresql")?;
        let port = free_port().ok_or("no free port")?;
        let dir = std::env::temp_dir().join(format!("outbox-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if running_as_root() {
            let status = Command::new("chown")
                .args(["postgres:", &dir.display().to_string()])
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("chown postgres {}", dir.display()));
            }
        }
        let cluster = Self {
            bin,
            port,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
            dir,
        };
        let data = cluster.data();
        run(
            &cluster.bin,
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        cluster.up()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn up(&self) -> Result<(), String> {
        let mut options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on",
            self.port,
            self.dir.display()
        );
        for setting in &self.settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let log = self.dir.join("server.log").display().to_string();
        run(
            &self.bin,
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
            ],
        )
    }

    /// Kills the server the way a power cut would: `pg_ctl stop -m
    /// immediate`, no shutdown checkpoint, WAL not yet flushed is lost.
    pub fn crash(&self) -> Result<(), String> {
        run(
            &self.bin,
            "pg_ctl",
            &["stop", "-w", "-m", "immediate", "-D", &self.data()],
        )
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = run(
            &self.bin,
            "pg_ctl",
            &["stop", "-w", "-m", "immediate", "-D", &self.data()],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
