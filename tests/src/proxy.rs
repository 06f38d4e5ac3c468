//! A fault-injecting HTTP/1.1 proxy for loopback tests. One request per connection (it answers with
//! `Connection: close`), so each request can be given its own fault: an error status, a delay, a cut
//! connection, a truncated or tampered body, a replayed old feed page, a request delivered twice, a
//! reply paced like a weak mobile signal, a reply held like a tunnel, or a rewritten reply. A process
//! that is not a Rust test (the app's window test) sets faults with `POST /__proxy/...` requests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status without forwarding.
    Status(u16),
    /// Forward (the central acts on it), then answer with this status anyway.
    StatusAfterForward(u16),
    /// Forward, then wait this long before answering.
    Delay(Duration),
    /// Forward, then close the connection without answering.
    CutAfterForward,
    /// Close the connection before forwarding anything.
    CutBeforeForward,
    /// Forward, then send only the first half of the reply and close.
    Truncate,
    /// Forward, then change one character inside a signed page's body.
    TamperPage,
    /// Answer a feed request with the first feed reply this proxy ever saw.
    ReplayFirstPage,
    /// Forward the request twice and answer with the second reply.
    Duplicate,
    /// Answer a feed request with the latest feed reply this proxy forwarded before it.
    ReplayLatestPage,
    /// Forward, then send the reply at this many bytes a second (a weak mobile signal).
    Pace(u32),
    /// Forward, then never answer until the client gives up (a tunnel).
    Hold,
    /// Forward, then replace every `from` in the reply with `to` (same length).
    Rewrite { from: String, to: String },
}

#[derive(Debug, Clone)]
struct Rule {
    path_prefix: String,
    fault: Fault,
    remaining: u32,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    first_feed_reply: Option<Vec<u8>>,
    latest_feed_reply: Option<Vec<u8>>,
    requests: Vec<String>,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Self {
            addr: listener.local_addr().expect("addr"),
            upstream: Arc::new(Mutex::new(upstream)),
            state: Arc::new(Mutex::new(State::default())),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let p = p.clone();
                tokio::spawn(async move {
                    let _ = p.handle(socket).await;
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Points the proxy at a (restarted) central.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }

    /// Applies `fault` to the next `times` requests whose path starts with `path_prefix`.
    pub fn inject(&self, path_prefix: &str, fault: Fault, times: u32) {
        self.state.lock().unwrap().rules.push(Rule {
            path_prefix: path_prefix.to_string(),
            fault,
            remaining: times,
        });
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Request lines seen, e.g. `GET /v1/feed?after=0&limit=2000`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut state = self.state.lock().unwrap();
        let rule = state
            .rules
            .iter_mut()
            .find(|r| r.remaining > 0 && path.starts_with(&r.path_prefix))?;
        rule.remaining -= 1;
        Some(rule.fault.clone())
    }

    /// `POST /__proxy/pace/{bytes_per_sec}/{path_prefix...}`, `/__proxy/hold/{path_prefix...}`,
    /// `/__proxy/clear`: the same faults for processes outside the Rust tests, on every matching
    /// request until cleared.
    fn control(&self, path: &str) -> bool {
        let parts: Vec<&str> = path
            .trim_start_matches("/__proxy/")
            .splitn(3, '/')
            .collect();
        let prefix = |rest: &[&str]| format!("/{}", rest.join("/"));
        match parts.as_slice() {
            ["clear", ..] => self.clear(),
            ["pace", rate, rest @ ..] => match rate.parse() {
                Ok(rate) => self.inject(&prefix(rest), Fault::Pace(rate), u32::MAX),
                Err(_) => return false,
            },
            ["hold", rest @ ..] => self.inject(&prefix(rest), Fault::Hold, u32::MAX),
            _ => return false,
        }
        true
    }

    async fn handle(&self, mut socket: TcpStream) -> std::io::Result<()> {
        let request = match read_request(&mut socket).await? {
            Some(r) => r,
            None => return Ok(()),
        };
        let request_line = String::from_utf8_lossy(
            &request[..request.iter().position(|b| *b == b'\r').unwrap_or(0)],
        )
        .to_string();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        if path.starts_with("/__proxy/") {
            // Newer rules first: a later control request overrides an earlier one.
            let ok = {
                let before = self.state.lock().unwrap().rules.len();
                let ok = self.control(&path);
                let mut state = self.state.lock().unwrap();
                if state.rules.len() > before {
                    let newest = state.rules.pop().expect("just pushed");
                    state.rules.insert(0, newest);
                }
                ok
            };
            return write_status(&mut socket, if ok { 200 } else { 400 }).await;
        }
        self.state
            .lock()
            .unwrap()
            .requests
            .push(request_line.clone());
        let fault = self.take_fault(&path);
        let upstream = *self.upstream.lock().unwrap();
        let reply = match &fault {
            Some(Fault::Status(code)) => return write_status(&mut socket, *code).await,
            Some(Fault::CutBeforeForward) => return Ok(()),
            Some(Fault::ReplayFirstPage) => {
                let recorded = self.state.lock().unwrap().first_feed_reply.clone();
                match recorded {
                    Some(r) => r,
                    None => forward(upstream, &request).await?,
                }
            }
            Some(Fault::ReplayLatestPage) => {
                let recorded = self.state.lock().unwrap().latest_feed_reply.clone();
                match recorded {
                    Some(r) => return socket.write_all(&r).await,
                    None => forward(upstream, &request).await?,
                }
            }
            Some(Fault::Duplicate) => {
                let _ = forward(upstream, &request).await?;
                forward(upstream, &request).await?
            }
            _ => match forward(upstream, &request).await {
                Ok(r) => r,
                // The central is down: the device sees a cut connection.
                Err(_) => return Ok(()),
            },
        };
        if path.starts_with("/v1/feed") {
            let mut state = self.state.lock().unwrap();
            if reply.starts_with(b"HTTP/1.1 200") {
                if state.first_feed_reply.is_none() {
                    state.first_feed_reply = Some(reply.clone());
                }
                state.latest_feed_reply = Some(reply.clone());
            }
        }
        match fault {
            Some(Fault::StatusAfterForward(code)) => write_status(&mut socket, code).await,
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                socket.write_all(&reply).await
            }
            Some(Fault::CutAfterForward) => Ok(()),
            Some(Fault::Truncate) => socket.write_all(&reply[..reply.len() / 2]).await,
            Some(Fault::TamperPage) => socket.write_all(&tamper(reply)).await,
            Some(Fault::Pace(rate)) => {
                // Tenths of a second, each carrying a tenth of the rate.
                let chunk = (rate as usize / 10).max(1);
                for part in reply.chunks(chunk) {
                    socket.write_all(part).await?;
                    socket.flush().await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(())
            }
            Some(Fault::Hold) => {
                // Answers nothing; the connection ends when the client gives up or the test ends.
                let mut sink = [0u8; 1024];
                while socket.read(&mut sink).await? > 0 {}
                Ok(())
            }
            Some(Fault::Rewrite { from, to }) => {
                assert_eq!(from.len(), to.len(), "a rewrite keeps the length");
                let mut out = reply;
                while let Some(at) = find(&out, from.as_bytes()) {
                    out[at..at + from.len()].copy_from_slice(to.as_bytes());
                }
                socket.write_all(&out).await
            }
            _ => socket.write_all(&reply).await,
        }
    }
}

/// Reads one HTTP/1.1 request (head and Content-Length body).
async fn read_request(socket: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // One request per connection: ask the central to close after answering.
    let head_text = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let rewritten: String = head_text
        .split("\r\n")
        .filter(|l| !l.to_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let rewritten =
        rewritten.trim_end_matches("\r\n").to_string() + "\r\nConnection: close\r\n\r\n";
    let mut out = rewritten.into_bytes();
    out.extend_from_slice(&buf[head_end..]);
    Ok(Some(out))
}

async fn forward(upstream: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(upstream).await?;
    conn.write_all(request).await?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).await?;
    if reply.is_empty() {
        return Err(std::io::Error::other("empty reply"));
    }
    Ok(reply)
}

async fn write_status(socket: &mut TcpStream, code: u16) -> std::io::Result<()> {
    let body = r#"{"error":"injected_fault","message":"a fault injected by the test proxy"}"#;
    let reply = format!(
        "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(reply.as_bytes()).await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Changes one base64 character well inside the signed body, keeping the length.
fn tamper(mut reply: Vec<u8>) -> Vec<u8> {
    if let Some(at) = find(&reply, b"\"body\":\"") {
        let i = at + 8 + 40;
        if i < reply.len() {
            reply[i] = if reply[i] == b'A' { b'B' } else { b'A' };
        }
    }
    reply
}
