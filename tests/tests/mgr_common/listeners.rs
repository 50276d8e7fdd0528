//! Stand-ins for the servers Ceph's stock modules send to, each on
//! 127.0.0.1 and an ephemeral port: a mail server (`alerts`), an InfluxDB
//! HTTP API (`influx`) and a Telegraf socket listener (`telegraf`). Each
//! runs on its own thread for the rest of the test process and hands what
//! arrived to the test through a channel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// Bound on one connection's silence before the listener gives up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one HTTP request body (the influx module batches 5000 points).
const MAX_BODY_BYTES: usize = 64 << 20;

fn bind() -> anyhow::Result<(TcpListener, u16)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}

/// Accepts connections forever on a thread, serving each with `serve`.
fn spawn_accept<F>(l: TcpListener, serve: F)
where
    F: Fn(TcpStream) + Send + 'static,
{
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
            serve(conn);
        }
    });
}

/// An SMTP server: each message's DATA (headers and body) is sent on the
/// channel.
pub fn smtp() -> anyhow::Result<(u16, mpsc::Receiver<String>)> {
    let (l, port) = bind()?;
    let (tx, rx) = mpsc::channel();
    spawn_accept(l, move |conn| {
        let Ok(mut w) = conn.try_clone() else { return };
        let mut r = BufReader::new(conn);
        let _ = w.write_all(b"220 localhost test SMTP\r\n");
        let mut data = String::new();
        let mut in_data = false;
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    let _ = w.write_all(b"250 queued\r\n");
                    let _ = tx.send(std::mem::take(&mut data));
                } else {
                    data.push_str(&line);
                }
                continue;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 localhost\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go on\r\n"
                }
                "QUIT" => {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                }
                _ => b"250 ok\r\n",
            };
            let _ = w.write_all(reply);
        }
    });
    Ok((port, rx))
}

/// One HTTP/1.1 request: method, path, body.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut parts = first.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    if len > MAX_BODY_BYTES {
        return None;
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

/// The part of InfluxDB's HTTP API the influx module uses: `GET /query`
/// (`SHOW DATABASES`, answered with the database `ceph`) and `POST /write`,
/// whose line-protocol body is sent on the channel.
pub fn influxdb() -> anyhow::Result<(u16, mpsc::Receiver<String>)> {
    let (l, port) = bind()?;
    let (tx, rx) = mpsc::channel();
    spawn_accept(l, move |conn| {
        let Ok(mut w) = conn.try_clone() else { return };
        let mut r = BufReader::new(conn);
        while let Some((method, path, body)) = read_request(&mut r) {
            let (status, reply) = if method == "GET" && path.starts_with("/query") {
                (
                    "200 OK",
                    r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["ceph"]]}]}]}"#,
                )
            } else if method == "POST" && path.starts_with("/write") {
                let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                ("204 No Content", "")
            } else {
                ("404 Not Found", "")
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                reply.len()
            );
            if w.write_all(head.as_bytes()).is_err() || w.write_all(reply.as_bytes()).is_err() {
                break;
            }
        }
    });
    Ok((port, rx))
}

/// A TCP line listener (Telegraf's `socket_listener` input): everything
/// one connection sends, up to its close, is sent on the channel.
pub fn lines() -> anyhow::Result<(u16, mpsc::Receiver<String>)> {
    let (l, port) = bind()?;
    let (tx, rx) = mpsc::channel();
    spawn_accept(l, move |mut conn| {
        let mut all = String::new();
        if conn.read_to_string(&mut all).is_ok() {
            let _ = tx.send(all);
        }
    });
    Ok((port, rx))
}

/// Waits (bounded) for the next message on a listener's channel.
pub async fn next(
    rx: mpsc::Receiver<String>,
    what: &str,
    limit: Duration,
) -> anyhow::Result<(String, mpsc::Receiver<String>)> {
    let what = what.to_string();
    tokio::task::spawn_blocking(move || match rx.recv_timeout(limit) {
        Ok(m) => Ok((m, rx)),
        Err(_) => Err(anyhow::anyhow!(
            "nothing reached the {what} listener within {limit:?}"
        )),
    })
    .await?
}
