//! A fault proxy in front of a real DynamoDB endpoint (moto): forwards requests, or injects
//! the faults moto never produces — throttling, 5xx, unprocessed items, cancelled
//! transactions, acknowledgements lost after the write was applied — and can be killed and
//! restarted on the same port. The storage behind it is real, so tests check exact counts.
//!
//! Requests reach moto one at a time, and each one runs to its end even when its client
//! has gone (a killed connection, an attempt time-out): DynamoDB applies a request whose
//! client vanished, and its transactions are serializable. moto's are not — it snapshots
//! the table when a transaction starts and restores the snapshot when the transaction is
//! cancelled, so an abandoned request still running beside its retry can undo the retry's
//! writes or its own. Serializing at the proxy gives the writer the store it is built for.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What to do with one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Pass it through.
    Forward,
    /// Answer with this status and DynamoDB error code, without forwarding.
    Error(u16, &'static str),
    /// Forward it (the write is applied), then answer 500 instead of moto's answer.
    LostAckStatus,
    /// Forward it (the write is applied), then close the connection without answering.
    LostAckDrop,
    /// `BatchWriteItem`: forward only the first `n` requests, report the rest unprocessed.
    Unprocessed(usize),
    /// `TransactWriteItems`: cancel it with `ThrottlingError` reasons (nothing applied).
    CancelThrottled,
}

/// What the proxy saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The operation (`TransactWriteItems`, `BatchWriteItem`, `Query`…).
    pub operation: String,
    /// For writes: the (pk, sk) of every item in the request.
    pub keys: Vec<(String, String)>,
    /// The fault applied.
    pub fault: String,
}

#[derive(Debug, Default)]
struct State {
    rules: Mutex<VecDeque<(String, Fault)>>,
    seen: Mutex<Vec<Seen>>,
}

/// moto behind the proxy, taking one request at a time.
#[derive(Debug)]
struct Upstream {
    url: String,
    http: reqwest::Client,
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// The proxy.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: Arc<Upstream>,
    state: Arc<State>,
    tasks: Mutex<JoinSet<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 in front of `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            upstream: Arc::new(Upstream {
                url: upstream.trim_end_matches('/').to_owned(),
                http: reqwest::Client::new(),
                one_at_a_time: tokio::sync::Mutex::new(()),
            }),
            state: Arc::default(),
            tasks: Mutex::new(JoinSet::new()),
        };
        proxy.serve(listener);
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a fault for the next request of `operation` (faults of one operation apply in
    /// order; requests without a queued fault are forwarded).
    pub fn inject(&self, operation: &str, fault: Fault) {
        self.state
            .rules
            .lock()
            .unwrap()
            .push_back((operation.to_owned(), fault));
    }

    /// Faults still queued.
    pub fn queued_faults(&self) -> usize {
        self.state.rules.lock().unwrap().len()
    }

    /// Every request seen.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Kills the proxy: stops listening and resets every open connection.
    pub fn kill(&self) {
        let mut tasks = self.tasks.lock().unwrap();
        tasks.abort_all();
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind the same port");
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let upstream = self.upstream.clone();
        let mut tasks = self.tasks.lock().unwrap();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(connection(stream, state.clone(), upstream.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Request {
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let mut length = 0usize;
            let mut target = String::new();
            let mut headers = Vec::new();
            for line in head.lines().skip(1) {
                if let Some((name, value)) = line.split_once(':') {
                    let name = name.trim().to_ascii_lowercase();
                    let value = value.trim().to_owned();
                    match name.as_str() {
                        "content-length" => length = value.parse().unwrap_or(0),
                        "x-amz-target" => target = value.clone(),
                        "host" | "connection" | "transfer-encoding" => continue,
                        _ => {}
                    }
                    headers.push((name, value));
                }
            }
            let start = end + 4;
            while buffer.len() < start + length {
                let mut chunk = [0u8; 16 * 1024];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            let body = buffer[start..start + length].to_vec();
            buffer.drain(..start + length);
            return Some(Request {
                target,
                headers,
                body,
            });
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    body: &[u8],
    error_type: Option<&str>,
) -> bool {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nx-amzn-requestid: proxy\r\n",
        body.len()
    );
    if let Some(code) = error_type {
        head.push_str(&format!("x-amzn-errortype: {code}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.is_ok() && stream.write_all(body).await.is_ok()
}

fn error_body(code: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
        "message": format!("injected {code}"),
    }))
    .unwrap()
}

fn item_key(item: &Value) -> (String, String) {
    (
        item["pk"]["S"].as_str().unwrap_or_default().to_owned(),
        item["sk"]["S"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The (pk, sk) of every item a write request puts.
fn write_keys(operation: &str, body: &Value) -> Vec<(String, String)> {
    match operation {
        "BatchWriteItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|tables| tables.values())
            .flat_map(|requests| requests.as_array().cloned().unwrap_or_default())
            .map(|r| item_key(&r["PutRequest"]["Item"]))
            .collect(),
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a.get("Put").is_some())
            .map(|a| item_key(&a["Put"]["Item"]))
            .collect(),
        _ => Vec::new(),
    }
}

/// Forwards with the client's headers (moto routes on the SigV4 `authorization` header's
/// service name; it does not check the signature, so a rewritten body is accepted). The
/// forward runs in a task of its own, after every earlier one, to its end: if the client's
/// connection is killed meanwhile, moto still finishes the request before the next starts.
async fn forward(
    upstream: &Arc<Upstream>,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Option<(u16, Vec<u8>)> {
    let upstream = upstream.clone();
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| name != "content-length")
        .cloned()
        .collect();
    tokio::spawn(async move {
        let _turn = upstream.one_at_a_time.lock().await;
        let mut request = upstream.http.post(format!("{}/", upstream.url));
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.body(body).send().await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.ok()?;
        Some((status, bytes.to_vec()))
    })
    .await
    .ok()
    .flatten()
}

async fn connection(mut stream: TcpStream, state: Arc<State>, upstream: Arc<Upstream>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        let operation = request
            .target
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let fault = {
            let mut rules = state.rules.lock().unwrap();
            match rules.iter().position(|(op, _)| *op == operation) {
                Some(i) => rules.remove(i).map(|(_, f)| f).unwrap_or(Fault::Forward),
                None => Fault::Forward,
            }
        };
        let parsed: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        state.seen.lock().unwrap().push(Seen {
            operation: operation.clone(),
            keys: write_keys(&operation, &parsed),
            fault: format!("{fault:?}"),
        });
        let ok = match fault {
            Fault::Forward => match forward(&upstream, &request.headers, request.body).await {
                Some((status, body)) => respond(&mut stream, status, &body, None).await,
                None => false,
            },
            Fault::Error(status, code) => {
                respond(&mut stream, status, &error_body(code), Some(code)).await
            }
            Fault::LostAckStatus => {
                let _ = forward(&upstream, &request.headers, request.body).await;
                respond(
                    &mut stream,
                    500,
                    &error_body("InternalServerError"),
                    Some("InternalServerError"),
                )
                .await
            }
            Fault::LostAckDrop => {
                let _ = forward(&upstream, &request.headers, request.body).await;
                false
            }
            Fault::Unprocessed(n) => {
                let mut forwarded = parsed.clone();
                let mut unprocessed = serde_json::Map::new();
                if let Some(tables) = forwarded["RequestItems"].as_object_mut() {
                    for (table, requests) in tables.iter_mut() {
                        let all = requests.as_array().cloned().unwrap_or_default();
                        let (first, rest) = all.split_at(n.min(all.len()));
                        *requests = Value::Array(first.to_vec());
                        if !rest.is_empty() {
                            unprocessed.insert(table.clone(), Value::Array(rest.to_vec()));
                        }
                    }
                }
                match forward(
                    &upstream,
                    &request.headers,
                    serde_json::to_vec(&forwarded).unwrap(),
                )
                .await
                {
                    Some((200, _)) => {
                        let body = serde_json::to_vec(&json!({ "UnprocessedItems": unprocessed }))
                            .unwrap();
                        respond(&mut stream, 200, &body, None).await
                    }
                    Some((status, body)) => respond(&mut stream, status, &body, None).await,
                    None => false,
                }
            }
            Fault::CancelThrottled => {
                let actions = parsed["TransactItems"].as_array().map_or(0, Vec::len);
                let reasons: Vec<Value> = (0..actions)
                    .map(|i| {
                        if i == 0 {
                            json!({"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity"})
                        } else {
                            json!({"Code": "None"})
                        }
                    })
                    .collect();
                let body = serde_json::to_vec(&json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError]",
                    "CancellationReasons": reasons,
                }))
                .unwrap();
                respond(
                    &mut stream,
                    400,
                    &body,
                    Some("TransactionCanceledException"),
                )
                .await
            }
        };
        if !ok {
            return;
        }
    }
}
