//! A test network in Linux network namespaces: each node gets a namespace
//! of its own with one address on a bridge that lives in a further
//! namespace, so links can be cut and healed (`ip link set ... down` on the
//! bridge side) without touching the machine's own network. Nothing is
//! created in the caller's namespace: every veth pair is made inside the
//! bridge namespace and its other end moved straight into the node's.
//!
//! Needs root and `ip` (iproute2). [`NetLab::new`] says why when it cannot
//! build the lab, so a test can skip with that message. Dropping the lab
//! deletes its namespaces (their veths go with them), also when a test
//! panics; labs left by a killed test run are deleted by the next one.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Every namespace of these labs starts with this (then the pid of the
/// test process that made it).
const PREFIX: &str = "kalmar-t";
/// The lab's private subnet (it exists only inside its namespaces).
const SUBNET: [u8; 3] = [10, 213, 0];

pub struct NetLab {
    /// `kalmar-t<pid>-<n>`: the lab's namespaces are `<tag>-br` and
    /// `<tag>-<i>`.
    tag: String,
    nodes: usize,
}

/// Runs `ip` with `args`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes namespaces of labs whose test process is gone.
fn remove_stale_labs() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl NetLab {
    /// Builds a lab of `nodes` namespaces on one bridge, or says why not.
    pub fn new(nodes: usize) -> Result<NetLab, String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        assert!(nodes < 250, "one /24");
        remove_stale_labs();
        let lab = NetLab {
            tag: format!(
                "{PREFIX}{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ),
            nodes: 0,
        };
        let br = lab.bridge_ns();
        ip(&["netns", "add", &br])?;
        // From here on, Drop removes whatever was made.
        let mut lab = lab;
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..nodes {
            let ns = lab.ns(i);
            ip(&["netns", "add", &ns])?;
            lab.nodes = i + 1;
            let port = format!("p{i}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let cidr = format!("{}/24", lab.addr(i));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(lab)
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.tag)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    /// Node `i`'s address (inside the lab only).
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], i as u8 + 1)
    }

    /// Cuts node `i` off the bridge (its packets are dropped both ways;
    /// its connections stall rather than reset, as on a real partition).
    pub fn cut(&self, i: usize) {
        let port = format!("p{i}");
        ip(&["-n", &self.bridge_ns(), "link", "set", &port, "down"]).expect("cut a link");
    }

    /// Puts node `i` back on the bridge.
    pub fn heal(&self, i: usize) {
        let port = format!("p{i}");
        ip(&["-n", &self.bridge_ns(), "link", "set", &port, "up"]).expect("heal a link");
    }

    /// A command that runs `program` inside node `i`'s namespace (`ip
    /// netns exec` execs it: the child's pid is the program's).
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i)]).arg(program);
        c
    }

    /// Runs `f` on a thread of its own inside node `i`'s namespace (the
    /// sockets it opens are that namespace's), on a runtime of that
    /// thread; returns its output.
    pub async fn run_in<F, Fut, T>(&self, i: usize, f: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let ns = self.ns(i);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            enter(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _ = tx.send(rt.block_on(f()));
        });
        rx.await.expect("the namespace thread panicked")
    }

    /// Like [`NetLab::run_in`] but does not wait: the thread ends when `f`
    /// does.
    pub fn spawn_in<F, Fut>(&self, i: usize, f: F) -> std::thread::JoinHandle<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let ns = self.ns(i);
        std::thread::spawn(move || {
            enter(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(f());
        })
    }
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open the namespace");
    // SAFETY: setns(2) on a namespace file this thread holds open; it
    // changes only the calling thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.bridge_ns()]);
    }
}
