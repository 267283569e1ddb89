//! A tiny HTTP/1.1 server on `127.0.0.1:0` that answers every request with one scripted,
//! chunked response, writing its parts with pauses in between.
//!
//! wiremock sends a body all at once (its delay only postpones the start), so time-to-first
//! -token and stall tests need this: the real SDK client yields each event-stream frame as
//! it arrives, and a pause between two chunks is a pause between two events.
//!
//! Tests that must not depend on the machine's speed synchronise on events instead of
//! pauses: a [`Gate`] holds the response (before its head, or before a part) until the test
//! opens it, and [`ChunkedServer::wait_for_requests`] waits until the server has read a
//! request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A gate a scripted response waits at until the test opens it. Clones share one gate;
/// once open it stays open.
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            open: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Opens the gate: every response waiting at it goes on, and later ones pass.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Waits until the gate is open.
    pub async fn wait(&self) {
        let mut open = self.open.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.open, &other.open)
    }
}

impl Eq for Gate {}

/// One step of a scripted response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Write these bytes as one HTTP chunk and flush.
    Bytes(Vec<u8>),
    /// Wait before the next part.
    Pause(Duration),
    /// Wait until the gate opens before the next part.
    Hold(Gate),
}

/// How a scripted response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The terminating zero-length chunk: a complete body.
    Complete,
    /// The connection is closed without it: the body is cut.
    Abort,
}

/// A scripted response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedResponse {
    /// The HTTP status.
    pub status: u16,
    /// The content type.
    pub content_type: String,
    /// Time before the status line is written.
    pub head_delay: Duration,
    /// A gate the status line waits at (a hung upstream until the test opens it).
    pub head_gate: Option<Gate>,
    /// The body, in parts.
    pub parts: Vec<Part>,
    /// How the body ends.
    pub ending: Ending,
}

impl ChunkedResponse {
    /// A 200 event-stream response writing each frame as its own chunk, at once.
    pub fn event_stream(frames: &[Vec<u8>]) -> Self {
        Self {
            status: 200,
            content_type: crate::eventstream::EVENT_STREAM_CONTENT_TYPE.to_owned(),
            head_delay: Duration::ZERO,
            head_gate: None,
            parts: frames.iter().cloned().map(Part::Bytes).collect(),
            ending: Ending::Complete,
        }
    }

    /// Inserts a pause before part `index` (before the body's end when `index` is the
    /// number of parts).
    pub fn pause_before(mut self, index: usize, wait: Duration) -> Self {
        self.parts.insert(index, Part::Pause(wait));
        self
    }

    /// Holds part `index` (the body's end when `index` is the number of parts) until
    /// `gate` opens: everything before it is written and flushed, nothing after it.
    pub fn hold_before(mut self, index: usize, gate: &Gate) -> Self {
        self.parts.insert(index, Part::Hold(gate.clone()));
        self
    }

    /// Holds the status line until `gate` opens: the request is read, then nothing is
    /// answered (a hung upstream).
    pub fn hold_head(mut self, gate: &Gate) -> Self {
        self.head_gate = Some(gate.clone());
        self
    }

    /// Waits before writing the status line.
    pub fn head_delay(mut self, wait: Duration) -> Self {
        self.head_delay = wait;
        self
    }

    /// Ends the body by closing the connection.
    pub fn abort(mut self) -> Self {
        self.ending = Ending::Abort;
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// The method.
    pub method: String,
    /// The path (percent-encoded as sent).
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub struct ChunkedServer {
    uri: String,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
    received: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl ChunkedServer {
    /// Starts a server answering every request with `response`.
    pub async fn start(response: ChunkedResponse) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let uri = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let (count, received) = watch::channel(0_usize);
        let count = Arc::new(count);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let response = response.clone();
                let recorded = Arc::clone(&recorded);
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    // A client that goes away mid-response is normal in these tests.
                    let _ = serve(socket, &response, &recorded, &count).await;
                });
            }
        });
        Ok(Self {
            uri,
            requests,
            received,
            task,
        })
    }

    /// The base URI (`http://127.0.0.1:PORT`), for an endpoint override.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until the server has read at least `count` requests (whole, body included).
    pub async fn wait_for_requests(&self, count: usize) {
        let mut received = self.received.clone();
        // The sender lives as long as the accept task, which `self` keeps alive.
        let _ = received.wait_for(|seen| *seen >= count).await;
    }
}

impl Drop for ChunkedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<ReceivedRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let mut content_length = 0;
    let mut expect_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            content_length = value.parse().unwrap_or(0);
        } else if name == "expect" && value.eq_ignore_ascii_case("100-continue") {
            expect_continue = true;
        }
    }
    if expect_continue {
        socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < content_length {
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(ReceivedRequest { method, path, body })
}

async fn serve(
    mut socket: TcpStream,
    response: &ChunkedResponse,
    recorded: &Mutex<Vec<ReceivedRequest>>,
    count: &watch::Sender<usize>,
) -> std::io::Result<()> {
    let request = read_request(&mut socket).await?;
    let seen = {
        let mut recorded = recorded.lock().unwrap();
        recorded.push(request);
        recorded.len()
    };
    count.send_replace(seen);
    if let Some(gate) = &response.head_gate {
        gate.wait().await;
    }
    if !response.head_delay.is_zero() {
        tokio::time::sleep(response.head_delay).await;
    }
    let head = format!(
        "HTTP/1.1 {} Scripted\r\ncontent-type: {}\r\ntransfer-encoding: chunked\r\n\
         x-amzn-requestid: chunked-server\r\nconnection: close\r\n\r\n",
        response.status, response.content_type
    );
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await?;
    for part in &response.parts {
        match part {
            Part::Bytes(bytes) => {
                socket
                    .write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
                    .await?;
                socket.write_all(bytes).await?;
                socket.write_all(b"\r\n").await?;
                socket.flush().await?;
            }
            Part::Pause(wait) => tokio::time::sleep(*wait).await,
            Part::Hold(gate) => gate.wait().await,
        }
    }
    match response.ending {
        Ending::Complete => {
            socket.write_all(b"0\r\n\r\n").await?;
            socket.flush().await?;
            socket.shutdown().await
        }
        Ending::Abort => Ok(()),
    }
}
