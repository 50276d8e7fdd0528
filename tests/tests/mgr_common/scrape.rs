//! Scraping Prometheus endpoints from tests: an HTTP GET, the samples of
//! a metric family, and the per-host exporter as a child process.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use kalmar_tests::Cluster;

pub fn http_get(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("http://").context("not an http URL")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    match body.split_once("\r\n\r\n") {
        Some((head, b)) if head.contains(" 200 ") => Ok(b.to_string()),
        _ => bail!("GET {url}: {}", body.lines().next().unwrap_or("")),
    }
}

/// `(labels, value)` of every sample of `name`.
pub fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let (labels, v) = r.split_once("} ")?;
                (labels.to_string(), v)
            } else {
                (String::new(), rest.strip_prefix(' ')?)
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

pub fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| l == labels)
        .map(|(_, v)| v)
}

pub fn osd_label(id: u32) -> String {
    format!("ceph_daemon=\"osd.{id}\"")
}

/// The exporter as a child process; killed (by its handle) when dropped.
pub struct Exporter {
    child: Child,
    pub url: String,
}

impl Exporter {
    pub fn start(c: &Cluster) -> anyhow::Result<Exporter> {
        let bin = std::path::Path::new(&std::env::var("KALMAR_BIN_DIR").context("KALMAR_BIN_DIR")?)
            .join("kalmar");
        let mut child = Command::new(bin)
            .args(["exporter", "--addr", "127.0.0.1:0", "--sock-dir"])
            .arg(c.dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child.stdout.take().context("exporter stdout")?;
        let mut first = String::new();
        BufReader::new(out).read_line(&mut first)?;
        let url = first
            .trim()
            .strip_prefix("serving ")
            .with_context(|| format!("exporter said {first:?}"))?
            .to_string();
        Ok(Exporter { child, url })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
