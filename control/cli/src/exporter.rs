//! `kalmar exporter`: the per-host endpoint of daemon perf counters, as
//! Ceph's `ceph-exporter` (port 9926, `/metrics`). At each scrape it reads
//! `perf schema` and `perf dump` from the admin socket of every daemon of
//! this host (the `*.asok` files of the socket folders, found anew each
//! time so daemons may come and go) and renders them with Ceph's names:
//! `ceph_<logger>_<counter>{ceph_daemon="osd.0"}`, averages as `_sum`
//! (seconds for times) and `_count`, counters of priority below the limit
//! left out (Ceph's `exporter_prio_limit`, 5).
//!
//! Why one process per host and not an endpoint in each daemon: several
//! daemons share a host and Prometheus scrapes one well-known port per
//! host (9926), the daemons' hot paths pay nothing for a scrape beyond
//! answering their admin socket, and the mgr stops being the one place
//! every daemon's counters go through (Ceph's reason for moving these out
//! of the mgr module in Ceph 17).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

/// Bound on one daemon's answer to `perf schema` or `perf dump`.
pub const ASOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a scraper's silence or slowness on its connection.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the admin sockets asked at once.
pub const PARALLEL_ASKS: usize = 16;
/// Bound on the admin sockets read per scrape.
pub const MAX_DAEMONS: usize = 4096;

/// Perf-counter type bits (Ceph's `perfcounter_type_d`).
const TYPE_LONGRUNAVG: u64 = 0x4;
const TYPE_COUNTER: u64 = 0x8;
const TYPE_HISTOGRAM: u64 = 0x10;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "exporter",
    about = "Serve this host's daemons' perf counters for Prometheus (Ceph's ceph-exporter)"
)]
pub struct ExporterArgs {
    /// Address to listen on (port 0: any free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:9926")]
    pub addr: SocketAddr,
    /// Folders holding the daemons' admin sockets (`NAME.asok`), scanned
    /// at each scrape; default: the conf file's folder.
    #[arg(long = "sock-dir")]
    pub sock_dirs: Vec<PathBuf>,
    /// Leave out counters whose priority is below this (Ceph's
    /// exporter_prio_limit).
    #[arg(long, default_value_t = 5)]
    pub prio_limit: u64,
}

/// One daemon's counters as read from its admin socket.
#[derive(Debug, Clone)]
pub struct DaemonCounters {
    /// `osd.0`, `mon.a`, `mgr.x`.
    pub name: String,
    pub schema: Value,
    pub dump: Value,
}

/// Ceph's metric name for a path (`mgr/prometheus`'s rules): `.`, `/`,
/// whitespace and `::` become `_`, `+` becomes `_plus`, a trailing `-`
/// `_minus`, another `-` `_`.
pub fn metric_name(path: &str) -> String {
    let mut s = path.replace("::", "_");
    if let Some(stem) = s.strip_suffix('-') {
        s = format!("{stem}_minus");
    }
    let mut out = String::with_capacity(s.len() + 5);
    out.push_str("ceph_");
    for c in s.chars() {
        match c {
            '.' | '/' | '-' => out.push('_'),
            '+' => out.push_str("_plus"),
            c if c.is_whitespace() => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

/// One metric family: HELP, TYPE and its samples.
#[derive(Default)]
struct Family {
    help: String,
    kind: &'static str,
    samples: Vec<(String, String)>,
}

fn number(v: &Value) -> Option<String> {
    v.as_u64()
        .map(|n| n.to_string())
        .or_else(|| v.as_i64().map(|n| n.to_string()))
        .or_else(|| v.as_f64().map(|f| f.to_string()))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text of several daemons' counters.
pub fn render(daemons: &[DaemonCounters], prio_limit: u64) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for d in daemons {
        let label = format!("ceph_daemon=\"{}\"", escape_label(&d.name));
        let Some(loggers) = d.schema.as_object() else {
            continue;
        };
        for (logger, counters) in loggers {
            let Some(counters) = counters.as_object() else {
                continue;
            };
            for (counter, desc) in counters {
                let ty = desc["type"].as_u64().unwrap_or(0);
                let prio = desc["priority"].as_u64().unwrap_or(0);
                if ty & TYPE_HISTOGRAM != 0 || prio < prio_limit {
                    continue;
                }
                let value = &d.dump[logger][counter];
                if value.is_null() {
                    continue;
                }
                let name = metric_name(&format!("{logger}.{counter}"));
                let help = desc["description"].as_str().unwrap_or("").to_string();
                if ty & TYPE_LONGRUNAVG != 0 {
                    let (Some(sum), Some(count)) =
                        (number(&value["sum"]), number(&value["avgcount"]))
                    else {
                        continue;
                    };
                    for (suffix, v) in [("_sum", sum), ("_count", count)] {
                        let f = families.entry(format!("{name}{suffix}")).or_default();
                        f.help = format!("{help} Total");
                        f.kind = "counter";
                        f.samples.push((label.clone(), v));
                    }
                } else if let Some(v) = number(value) {
                    let f = families.entry(name).or_default();
                    f.help = help;
                    f.kind = if ty & TYPE_COUNTER != 0 {
                        "counter"
                    } else {
                        "gauge"
                    };
                    // Times are in seconds in `perf dump` already.
                    f.samples.push((label.clone(), v));
                }
            }
        }
    }
    let mut out = String::new();
    for (name, f) in families {
        let _ = writeln!(out, "# HELP {name} {}", f.help.replace('\n', " "));
        let _ = writeln!(out, "# TYPE {name} {}", f.kind);
        for (labels, v) in f.samples {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
    out
}

/// The daemon name of an admin socket file: `osd.0.asok` and
/// `ceph-osd.0.asok` are `osd.0`; `None` if it names no daemon.
pub fn daemon_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".asok")?;
    let stem = stem.strip_prefix("ceph-").unwrap_or(stem);
    let (ty, id) = stem.split_once('.')?;
    (!ty.is_empty() && !id.is_empty()).then(|| stem.to_string())
}

/// The admin sockets of the folders, by daemon name, at most
/// [`MAX_DAEMONS`].
pub fn find_sockets(dirs: &[PathBuf]) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if let Some(name) = daemon_name(&p) {
                if out.len() < MAX_DAEMONS {
                    out.insert(name, p);
                }
            }
        }
    }
    out
}

/// Reads every daemon's schema and dump; daemons that do not answer are
/// left out (with the count of those, for the scrape's own metrics).
pub fn collect(dirs: &[PathBuf]) -> (Vec<DaemonCounters>, usize) {
    let sockets: Vec<(String, PathBuf)> = find_sockets(dirs).into_iter().collect();
    let mut got = Vec::new();
    let mut failed = 0;
    // Daemons answer their admin sockets independently: ask up to
    // PARALLEL_ASKS of them at once.
    for chunk in sockets.chunks(PARALLEL_ASKS) {
        let answers: Vec<Option<DaemonCounters>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(name, sock)| {
                    s.spawn(move || {
                        let ask = |prefix: &str| {
                            kalmar_common::admin_socket::request(
                                sock,
                                &json!({ "prefix": prefix }),
                                ASOK_TIMEOUT,
                            )
                        };
                        match (ask("perf schema"), ask("perf dump")) {
                            (Ok(schema), Ok(dump)) => Some(DaemonCounters {
                                name: name.clone(),
                                schema,
                                dump,
                            }),
                            _ => None,
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
        for a in answers {
            match a {
                Some(d) => got.push(d),
                None => failed += 1,
            }
        }
    }
    (got, failed)
}

/// One scrape's whole answer: the daemons' metrics, then the exporter's
/// own (`ceph_exporter_scrape_*`).
pub fn scrape(dirs: &[PathBuf], prio_limit: u64) -> String {
    let t = Instant::now();
    let (daemons, failed) = collect(dirs);
    let mut body = render(&daemons, prio_limit);
    let _ = writeln!(
        body,
        "# HELP ceph_exporter_scrape_daemons Daemons whose counters this scrape read\n\
         # TYPE ceph_exporter_scrape_daemons gauge\n\
         ceph_exporter_scrape_daemons {}\n\
         # HELP ceph_exporter_scrape_failed_daemons Admin sockets that did not answer\n\
         # TYPE ceph_exporter_scrape_failed_daemons gauge\n\
         ceph_exporter_scrape_failed_daemons {failed}\n\
         # HELP ceph_exporter_scrape_duration_seconds Time this scrape took\n\
         # TYPE ceph_exporter_scrape_duration_seconds gauge\n\
         ceph_exporter_scrape_duration_seconds {}",
        daemons.len(),
        t.elapsed().as_secs_f64()
    );
    body
}

fn respond(mut conn: TcpStream, dirs: &[PathBuf], prio_limit: u64) -> std::io::Result<()> {
    conn.set_read_timeout(Some(HTTP_TIMEOUT))?;
    conn.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    r.read_line(&mut first)?;
    // Headers are not needed; read them so the client sees a clean close.
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            scrape(dirs, prio_limit),
        ),
        "/" => (
            "200 OK",
            "text/html",
            "<html><head><title>Kalmar exporter</title></head><body>\
             <a href=\"/metrics\">Metrics</a></body></html>"
                .to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body.as_bytes())
}

/// Serves until the process is stopped. Prints the URL first (stdout).
pub fn run(args: &ExporterArgs, conf_path: Option<&Path>) -> anyhow::Result<()> {
    let dirs: Vec<PathBuf> = if args.sock_dirs.is_empty() {
        let dir = conf_path
            .and_then(Path::parent)
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .ok_or_else(|| {
                anyhow::anyhow!("no socket folder: pass --sock-dir DIR or --conf FILE")
            })?;
        vec![dir.to_path_buf()]
    } else {
        args.sock_dirs.clone()
    };
    let l = TcpListener::bind(args.addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.addr))?;
    println!("serving http://{}/metrics", l.local_addr()?);
    std::io::stdout().flush()?;
    // One scrape at a time: Prometheus scrapes every few seconds, and a
    // serial loop bounds the load on the daemons' admin sockets.
    for conn in l.incoming() {
        match conn {
            Ok(c) => {
                if let Err(e) = respond(c, &dirs, args.prio_limit) {
                    eprintln!("exporter: a scrape failed: {e}");
                }
            }
            Err(e) => eprintln!("exporter: accept failed: {e}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ceph() {
        assert_eq!(metric_name("osd.op_w"), "ceph_osd_op_w");
        assert_eq!(
            metric_name("AsyncMessenger::Worker-0.msgr_recv_messages"),
            "ceph_AsyncMessenger_Worker_0_msgr_recv_messages"
        );
        assert_eq!(metric_name("a.b+c"), "ceph_a_b_plusc");
        assert_eq!(metric_name("throttle-x.val-"), "ceph_throttle_x_val_minus");
        assert_eq!(
            daemon_name(Path::new("/d/osd.3.asok")).as_deref(),
            Some("osd.3")
        );
        assert_eq!(
            daemon_name(Path::new("/d/ceph-mon.a.asok")).as_deref(),
            Some("mon.a")
        );
        assert_eq!(daemon_name(Path::new("/d/kalmar.conf")), None);
    }

    #[test]
    fn renders_counters_gauges_and_averages() {
        let schema = json!({"osd": {
            "op_w": {"type": 10, "priority": 5, "description": "Client write operations"},
            "numpg": {"type": 2, "priority": 5, "description": "Placement groups"},
            "op_w_latency": {"type": 5, "priority": 5, "description": "Latency of write operation"},
            "subop_w": {"type": 10, "priority": 0, "description": "Replica writes"},
            "hist": {"type": 26, "priority": 9, "description": "h"},
        }});
        let dump = |w: u64| {
            json!({"osd": {"op_w": w, "numpg": 8, "subop_w": 3,
            "op_w_latency": {"avgcount": 4, "sum": 0.25, "avgtime": 0.0625}, "hist": 1}})
        };
        let ds = [
            DaemonCounters {
                name: "osd.0".into(),
                schema: schema.clone(),
                dump: dump(12),
            },
            DaemonCounters {
                name: "osd.1".into(),
                schema,
                dump: dump(7),
            },
        ];
        let text = render(&ds, 5);
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# TYPE ceph_osd_op_w counter",
            "ceph_osd_op_w{ceph_daemon=\"osd.0\"} 12",
            "ceph_osd_op_w{ceph_daemon=\"osd.1\"} 7",
            "# TYPE ceph_osd_numpg gauge",
            "ceph_osd_numpg{ceph_daemon=\"osd.1\"} 8",
            "# TYPE ceph_osd_op_w_latency_sum counter",
            "ceph_osd_op_w_latency_sum{ceph_daemon=\"osd.0\"} 0.25",
            "ceph_osd_op_w_latency_count{ceph_daemon=\"osd.0\"} 4",
        ] {
            assert!(lines.contains(&want), "{want} missing in\n{text}");
        }
        // Below the priority limit, and histograms: left out.
        assert!(!text.contains("subop_w"), "{text}");
        assert!(!text.contains("hist"), "{text}");
        // One HELP/TYPE per family.
        assert_eq!(text.matches("# TYPE ceph_osd_op_w counter").count(), 1);
        assert!(render(&ds, 0).contains("ceph_osd_subop_w{ceph_daemon=\"osd.0\"} 3"));
    }
}
