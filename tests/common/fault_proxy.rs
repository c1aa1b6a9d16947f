//! A fault-injecting HTTP/1.1 proxy between pgproof and moto, on loopback.
//!
//! One request per client connection, answered with `Connection: close`:
//! the request head and body are read whole, forwarded to moto over a fresh
//! connection (also `Connection: close`), and moto's response is relayed. No
//! pooling means every request is one connection, so a fault never spills
//! into the next request.
//!
//! Each request is numbered as it arrives; whether it is faulted, and how,
//! depends only on the seed and that number (a deterministic schedule; the
//! seed is printed and `PGPROOF_FAULT_SEED` repeats it). Faults:
//! - `Reset`: the connection is reset before any answer, sometimes at once,
//!   sometimes after part of the request was read;
//! - `SlowDown`: 503 with S3's `SlowDown` error, nothing forwarded;
//! - `Stall`: no answer until the client gives up (pgproof's time limit);
//! - `Truncated`: forwarded, then the response head with its full
//!   Content-Length but only part of the body, then closed;
//! - `Lost`: forwarded (moto acted on it), then reset instead of answering:
//!   the outcome is ambiguous to the client, as after a real network loss.
//!
//! Kinds are drawn with weights (`set_weights`; stalls, which cost the
//! client a whole time limit each, least often by default).
//!
//! A response without a body cannot be cut short: a `Truncated` draw on one
//! is applied (and counted) as `Lost`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Reset,
    SlowDown,
    Stall,
    Truncated,
    Lost,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Reset,
        Fault::SlowDown,
        Fault::Stall,
        Fault::Truncated,
        Fault::Lost,
    ];

    fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap()
    }

    pub fn label(self) -> &'static str {
        match self {
            Fault::Reset => "reset",
            Fault::SlowDown => "503 SlowDown",
            Fault::Stall => "stall",
            Fault::Truncated => "body cut short",
            Fault::Lost => "response lost after forwarding",
        }
    }
}

/// What the proxy has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests received (one per connection).
    pub requests: u64,
    /// Requests forwarded to moto and answered in full.
    pub relayed: u64,
    /// Requests received while faults were off.
    pub unfaulted: u64,
    /// Faults applied, by `Fault::ALL` order.
    pub faults: [u64; 5],
}

impl Counts {
    pub fn fault(&self, kind: Fault) -> u64 {
        self.faults[kind.index()]
    }

    pub fn total_faults(&self) -> u64 {
        self.faults.iter().sum()
    }

    /// The counts since `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut faults = [0; 5];
        for (i, f) in faults.iter_mut().enumerate() {
            *f = self.faults[i] - earlier.faults[i];
        }
        Counts {
            requests: self.requests - earlier.requests,
            relayed: self.relayed - earlier.relayed,
            unfaulted: self.unfaulted - earlier.unfaulted,
            faults,
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {} relayed in full, {} faults (",
            self.requests,
            self.relayed,
            self.total_faults()
        )?;
        for (i, kind) in Fault::ALL.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{} {}", kind.label(), self.faults[i])?;
        }
        write!(f, ")")
    }
}

struct State {
    upstream: SocketAddr,
    seed: u64,
    /// Faults per million requests.
    rate_ppm: AtomicU32,
    enabled: AtomicBool,
    /// How often each of `Fault::ALL` is drawn, relative to the others.
    weights: std::sync::Mutex<[u32; 5]>,
    next: AtomicU64,
    relayed: AtomicU64,
    unfaulted: AtomicU64,
    faults: [AtomicU64; 5],
    stop: AtomicBool,
}

pub struct FaultProxy {
    port: u16,
    state: Arc<State>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

/// The longest a stalled request is held when the client never gives up.
const STALL_MAX: Duration = Duration::from_secs(120);

/// Reset, SlowDown, Stall, Truncated, Lost: a stall costs the client a whole
/// time limit, so it is drawn less often than the others.
const DEFAULT_WEIGHTS: [u32; 5] = [3, 3, 1, 2, 3];

impl FaultProxy {
    /// A proxy in front of `upstream` (an `http://host:port` URL), faults
    /// off until `set_enabled(true)`, at `rate` (0.0 to 1.0) once on. The
    /// seed is `PGPROOF_FAULT_SEED` when set, else drawn from the clock;
    /// `PGPROOF_FAULT_RATE` overrides `rate`.
    pub fn start(upstream: &str, rate: f64) -> FaultProxy {
        let seed = match std::env::var("PGPROOF_FAULT_SEED") {
            Ok(s) => s.parse().expect("PGPROOF_FAULT_SEED is a number"),
            Err(_) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                splitmix(now.as_nanos() as u64 ^ u64::from(std::process::id()))
            }
        };
        let rate = std::env::var("PGPROOF_FAULT_RATE")
            .ok()
            .map(|r| r.parse().expect("PGPROOF_FAULT_RATE is a number"))
            .unwrap_or(rate);
        Self::start_seeded(upstream, rate, seed)
    }

    pub fn start_seeded(upstream: &str, rate: f64, seed: u64) -> FaultProxy {
        let authority = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .unwrap_or_else(|e| panic!("resolving {authority}: {e}"))
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream,
            seed,
            rate_ppm: AtomicU32::new((rate * 1e6) as u32),
            enabled: AtomicBool::new(false),
            weights: std::sync::Mutex::new(DEFAULT_WEIGHTS),
            next: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            unfaulted: AtomicU64::new(0),
            faults: Default::default(),
            stop: AtomicBool::new(false),
        });
        eprintln!(
            "fault proxy on 127.0.0.1:{port} in front of {upstream}: seed {seed} (PGPROOF_FAULT_SEED={seed} repeats the schedule), rate {rate}"
        );
        let shared = state.clone();
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(conn, &state));
            }
        });
        FaultProxy {
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn seed(&self) -> u64 {
        self.state.seed
    }

    /// `http://127.0.0.1:<port>`: what AWS_ENDPOINT_URL names.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The S3 environment of the test harness, through this proxy.
    pub fn s3_env(&self) -> Vec<(String, String)> {
        let mut env = super::s3_env();
        for (k, v) in env.iter_mut() {
            if k == "AWS_ENDPOINT_URL" {
                *v = self.endpoint();
            }
        }
        env
    }

    /// The Azurite environment of the test harness, through this proxy.
    pub fn azure_env(&self) -> Vec<(String, String)> {
        let mut env = super::azure_env();
        for (k, v) in env.iter_mut() {
            if k == "AZURITE_BLOB_STORAGE_URL" {
                *v = self.endpoint();
            }
        }
        env
    }

    /// Faults on or off (off for setup traffic).
    pub fn set_enabled(&self, on: bool) {
        self.state.enabled.store(on, Ordering::SeqCst);
    }

    /// How often each kind is drawn from now on, relative to the others
    /// (kinds not named are never drawn).
    pub fn set_weights(&self, weights: &[(Fault, u32)]) {
        let mut w = [0; 5];
        for (kind, weight) in weights {
            w[kind.index()] = *weight;
        }
        assert!(w.iter().sum::<u32>() > 0, "at least one kind of fault");
        *self.state.weights.lock().unwrap() = w;
    }

    pub fn set_rate(&self, rate: f64) {
        self.state
            .rate_ppm
            .store((rate * 1e6) as u32, Ordering::SeqCst);
    }

    pub fn counts(&self) -> Counts {
        let s = &self.state;
        let mut faults = [0; 5];
        for (i, f) in faults.iter_mut().enumerate() {
            *f = s.faults[i].load(Ordering::SeqCst);
        }
        Counts {
            requests: s.next.load(Ordering::SeqCst),
            relayed: s.relayed.load(Ordering::SeqCst),
            unfaulted: s.unfaulted.load(Ordering::SeqCst),
            faults,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor blocked in accept().
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// SplitMix64: a well-mixed 64-bit value from any input.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The fault for request `n` (and a second draw for how far to go), or none.
fn draw(state: &State, n: u64) -> (Option<Fault>, u64) {
    let x = splitmix(state.seed ^ splitmix(n));
    let extra = splitmix(x);
    if !state.enabled.load(Ordering::SeqCst) {
        state.unfaulted.fetch_add(1, Ordering::SeqCst);
        return (None, extra);
    }
    if (x % 1_000_000) as u32 >= state.rate_ppm.load(Ordering::SeqCst) {
        return (None, extra);
    }
    let weights = *state.weights.lock().unwrap();
    let mut pick = (x >> 32) % u64::from(weights.iter().sum::<u32>());
    for (kind, weight) in Fault::ALL.iter().zip(weights) {
        if pick < u64::from(weight) {
            return (Some(*kind), extra);
        }
        pick -= u64::from(weight);
    }
    unreachable!("the pick is below the sum of the weights")
}

fn count(state: &State, kind: Fault) {
    state.faults[kind.index()].fetch_add(1, Ordering::SeqCst);
}

/// Closes with a TCP reset (SO_LINGER 0) rather than an orderly FIN.
fn reset(conn: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

fn serve(conn: TcpStream, state: &State) {
    let n = state.next.fetch_add(1, Ordering::SeqCst);
    let (fault, extra) = draw(state, n);
    if fault == Some(Fault::Reset) && extra % 3 == 0 {
        count(state, Fault::Reset);
        reset(conn);
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let request = match Message::read(&mut reader, false) {
        Ok(Some(m)) => m,
        // The client went away before sending a request: nothing to count.
        _ => {
            return;
        }
    };
    let mut conn = conn;
    match fault {
        Some(Fault::Reset) => {
            // Reset after the head (the body, if any, left partly unread).
            count(state, Fault::Reset);
            reset(conn);
        }
        Some(Fault::SlowDown) => {
            count(state, Fault::SlowDown);
            let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>";
            let with_body = request.method() != "HEAD";
            let head = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                if with_body { body.len() } else { 0 }
            );
            let _ = conn.write_all(head.as_bytes());
            if with_body {
                let _ = conn.write_all(body);
            }
            let _ = conn.shutdown(Shutdown::Write);
            drain_until_closed(&conn, Duration::from_secs(5));
        }
        Some(Fault::Stall) => {
            count(state, Fault::Stall);
            drain_until_closed(&conn, STALL_MAX);
        }
        Some(Fault::Truncated) | Some(Fault::Lost) | None => {
            let response = match forward(state.upstream, &request) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("fault proxy: forwarding request {n} to moto failed: {e}");
                    reset(conn);
                    return;
                }
            };
            match fault {
                Some(Fault::Truncated) if !response.body.is_empty() => {
                    count(state, Fault::Truncated);
                    let cut = (extra % response.body.len() as u64) as usize;
                    let _ = conn.write_all(&response.head_bytes());
                    let _ = conn.write_all(&response.body[..cut]);
                    let _ = conn.flush();
                    let _ = conn.shutdown(Shutdown::Write);
                    drain_until_closed(&conn, Duration::from_secs(5));
                }
                Some(_) => {
                    count(state, Fault::Lost);
                    reset(conn);
                }
                None => {
                    let _ = conn.write_all(&response.head_bytes());
                    let _ = conn.write_all(&response.body);
                    let _ = conn.flush();
                    state.relayed.fetch_add(1, Ordering::SeqCst);
                    let _ = conn.shutdown(Shutdown::Write);
                    drain_until_closed(&conn, Duration::from_secs(5));
                }
            }
        }
    }
}

/// Waits until the client closes its side (or `limit`), discarding what it sends.
fn drain_until_closed(conn: &TcpStream, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut conn = conn;
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn forward(upstream: SocketAddr, request: &Message) -> std::io::Result<Message> {
    let mut up = TcpStream::connect_timeout(&upstream, Duration::from_secs(10))?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    up.write_all(&request.head_bytes())?;
    up.write_all(&request.body)?;
    up.flush()?;
    let mut reader = BufReader::new(up);
    let no_body = request.method() == "HEAD";
    Message::read(&mut reader, no_body)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "moto closed without answering",
        )
    })
}

/// One HTTP/1.1 message: its start line, headers and (de-chunked) body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    /// `None` when the peer closed before sending anything. `no_body`: a
    /// response to HEAD, whose Content-Length describes a body never sent.
    fn read(r: &mut impl BufRead, no_body: bool) -> std::io::Result<Option<Message>> {
        let mut start = String::new();
        if r.read_line(&mut start)? == 0 {
            return Ok(None);
        }
        let start = start.trim_end().to_string();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut m = Message {
            start,
            headers,
            body: Vec::new(),
        };
        let status = m.start.split(' ').nth(1).unwrap_or("");
        let bodiless = no_body || status.starts_with('1') || status == "204" || status == "304";
        if bodiless {
            return Ok(Some(m));
        }
        if m.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let at = m.body.len();
                m.body.resize(at + size, 0);
                r.read_exact(&mut m.body[at..])?;
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf)?;
            }
        } else if let Some(len) = m.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| std::io::Error::other("bad Content-Length"))?;
            m.body.resize(len, 0);
            r.read_exact(&mut m.body)?;
        } else if m.start.starts_with("HTTP/") {
            // A response without a length ends when the connection does.
            r.read_to_end(&mut m.body)?;
        }
        Ok(Some(m))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or("")
    }

    /// The head as sent on: framed by Content-Length (bodies are read
    /// whole), `Connection: close`. A HEAD response keeps its own length.
    fn head_bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        let keep_length = self.body.is_empty() && self.start.starts_with("HTTP/");
        for (k, v) in &self.headers {
            let lower = k.to_ascii_lowercase();
            let framing = lower == "transfer-encoding" || lower == "content-length";
            let hop_by_hop = matches!(
                lower.as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "expect" | "transfer-encoding"
            );
            if hop_by_hop || (framing && !keep_length) {
                continue;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !keep_length {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}
