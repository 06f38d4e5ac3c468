//! A local authority's webhook receiver for tests: answers 200 to every POST and counts how many
//! times each notification (by its `X-Cpis-Event-Id`) arrived.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct WebhookCounter {
    pub addr: SocketAddr,
    received: Arc<Mutex<HashMap<String, usize>>>,
}

impl WebhookCounter {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let counter = Self {
            addr: listener.local_addr().expect("addr"),
            received: Arc::default(),
        };
        let c = counter.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let c = c.clone();
                std::thread::spawn(move || c.serve(stream));
            }
        });
        counter
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Event id -> how many times it was POSTed.
    pub fn received(&self) -> HashMap<String, usize> {
        self.received.lock().unwrap().clone()
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let (mut length, mut event) = (0usize, None);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "x-cpis-event-id" => event = Some(value.trim().to_string()),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            if let Some(id) = event {
                *self.received.lock().unwrap().entry(id).or_default() += 1;
            }
            if writer
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .is_err()
            {
                return;
            }
        }
    }
}
