//! Throwaway Redis servers for tests: one `redis-server` on a free loopback port, or a 3-node
//! Redis Cluster (three servers with `cluster-enabled yes`, joined by `redis-cli --cluster
//! create … --cluster-replicas 0 --cluster-yes`). Each lives in a temporary directory and is
//! stopped (and the directory removed) when dropped. Python tests use the twin helper
//! tests/python/redis_server.py.
//!
//! `redis-server` and `redis-cli` must be installed (`.ci/run` installs them with apt-get);
//! without them these helpers return an error, so a test fails rather than skips: the fleet
//! is only proven against a real server.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to accept connections, or a cluster to agree on its slots.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Fresh ports tried when another process takes the chosen one first.
const START_ATTEMPTS: usize = 5;

/// A loopback port nothing listens on now (bound and released). When `with_bus` is set the
/// cluster bus port (`port + 10000`) is free too.
pub fn free_port(with_bus: bool) -> io::Result<u16> {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !with_bus {
            return Ok(port);
        }
        if port < 55000 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free loopback port pair found"))
}

fn binary(name: &str) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} is not installed (apt-get install redis-server; .ci/run does it)"),
            )
        })
}

fn temp_dir(label: &str) -> io::Result<PathBuf> {
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(|error| io::Error::other(error.to_string()))?;
    let dir = std::env::temp_dir().join(format!(
        "flagrail-{label}-{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// One `redis-server` on 127.0.0.1 (no persistence).
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
    owns_dir: bool,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> io::Result<RedisServer> {
        let dir = temp_dir("redis")?;
        let mut server = RedisServer {
            port: 0,
            dir,
            cluster: false,
            child: None,
            owns_dir: true,
        };
        server.start_on_a_free_port(false)?;
        Ok(server)
    }

    fn cluster_node(dir: &Path) -> io::Result<RedisServer> {
        let mut server = RedisServer {
            port: 0,
            dir: dir.to_path_buf(),
            cluster: true,
            child: None,
            owns_dir: false,
        };
        server.start_on_a_free_port(true)?;
        Ok(server)
    }

    /// A free port is only free when it is checked: tests run in parallel, and another
    /// test's server may take the port before ours binds it. Ours then exits, so a few
    /// fresh ports are tried before giving up.
    fn start_on_a_free_port(&mut self, with_bus: bool) -> io::Result<()> {
        let parent = self.dir.clone();
        let mut last_error = io::Error::other("no attempt made");
        for _ in 0..START_ATTEMPTS {
            self.port = free_port(with_bus)?;
            if self.cluster {
                // Each node keeps its own nodes.conf and log.
                self.dir = parent.join(self.port.to_string());
                std::fs::create_dir_all(&self.dir)?;
            }
            match self.restart() {
                Ok(()) => return Ok(()),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]): a "Redis came
    /// back" for tests. Its data is gone (no persistence), as after a real restart without
    /// a dump.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let mut command = Command::new(binary("redis-server")?);
        command
            .current_dir(&self.dir)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning", "--logfile", "redis.log"]);
        if self.cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ]);
        }
        self.child = Some(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_as_our_child() {
                return Ok(());
            }
            if !self.is_running() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                self.stop();
                return Err(io::Error::other(format!(
                    "redis-server on port {} did not start: {log}",
                    self.port
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server on our port is the child we started. A bare connect is not
    /// enough: another test's server may hold the port (ours then exits on "address in
    /// use"), and a loopback connect to a port in the ephemeral range can connect the
    /// socket to itself. `INFO server` names the answering process.
    fn answers_as_our_child(&self) -> bool {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return false;
        };
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let timeout = Some(Duration::from_secs(1));
        if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
            return false;
        }
        if stream.write_all(b"INFO server\r\n").is_err() {
            return false;
        }
        let wanted = format!("process_id:{pid}\r\n");
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        // The reply is a few KiB; stop once the line is in or the server stops sending.
        while reply.len() < 64 * 1024 {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(read) => reply.extend_from_slice(&chunk[..read]),
            }
            let text = String::from_utf8_lossy(&reply);
            if text.contains(&wanted) {
                return true;
            }
            if text.contains("process_id:") && text.contains("\r\nrun_id:") {
                return false;
            }
        }
        false
    }

    /// Stops the server (SIGKILL: a crash, not a clean shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `redis-cli -p <port> <args>` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        redis_cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> io::Result<String> {
    let output = Command::new(binary("redis-cli")?)
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A 3-node Redis Cluster on loopback (masters only, the 16384 slots split three ways).
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, creates the cluster and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start() -> io::Result<RedisCluster> {
        let dir = temp_dir("redis-cluster")?;
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::cluster_node(&dir)?);
        }
        let cluster = RedisCluster { nodes, dir };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(cluster.nodes[0].port, &args)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !cluster.is_ok() {
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "the 3-node cluster did not reach state ok",
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    fn is_ok(&self) -> bool {
        self.nodes.iter().all(|node| {
            node.cli(&["cluster", "info"])
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The slot Redis Cluster assigns to `key` (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> io::Result<u16> {
        self.nodes[0]
            .cli(&["cluster", "keyslot", key])?
            .trim()
            .parse()
            .map_err(io::Error::other)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_another_server_holds_is_not_taken_for_ours() {
        let holder = RedisServer::start().expect("redis-server");
        let mut late = RedisServer {
            port: holder.port,
            dir: temp_dir("redis-late").expect("dir"),
            cluster: false,
            child: None,
            owns_dir: true,
        };
        // Our child cannot bind the port; the server that answers there is not ours.
        let error = late
            .restart()
            .expect_err("the port belongs to another server");
        assert!(error.to_string().contains("did not start"), "{error}");
        assert!(!late.is_running());
        // Starting on a free port instead succeeds, and it is a different server.
        late.start_on_a_free_port(false).expect("a fresh port");
        assert_ne!(late.port, holder.port);
        assert!(late.answers_as_our_child());
        assert!(holder.answers_as_our_child());
    }
}
