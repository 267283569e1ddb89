//! A tiny HTTP/1.1 server on `127.0.0.1:0` that answers every request with one scripted,
//! chunked response, writing its parts with pauses in between.
//!
//! wiremock sends a body all at once (its delay only postpones the start), so time-to-first
//! -token and stall tests need this: the real SDK client yields each event-stream frame as
//! it arrives, and a pause between two chunks is a pause between two events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One step of a scripted response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Write these bytes as one HTTP chunk and flush.
    Bytes(Vec<u8>),
    /// Wait before the next part.
    Pause(Duration),
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
    task: JoinHandle<()>,
}

impl ChunkedServer {
    /// Starts a server answering every request with `response`.
    pub async fn start(response: ChunkedResponse) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let uri = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let response = response.clone();
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    // A client that goes away mid-response is normal in these tests.
                    let _ = serve(socket, &response, &recorded).await;
                });
            }
        });
        Ok(Self {
            uri,
            requests,
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
) -> std::io::Result<()> {
    let request = read_request(&mut socket).await?;
    recorded.lock().unwrap().push(request);
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
