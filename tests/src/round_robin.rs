//! A round-robin TCP load balancer for loopback tests: each new connection goes to the next
//! upstream that accepts it (a stopped one is skipped). It can be armed to kill one upstream's
//! process (SIGKILL) the moment an access-event push has been forwarded to it, before its answer:
//! a crash in the middle of an event push.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Armed {
    /// (upstream index, process id): new connections go to that upstream until the kill fires.
    target: Option<(usize, u32)>,
    fired: bool,
}

#[derive(Clone)]
pub struct RoundRobin {
    pub addr: SocketAddr,
    upstreams: Arc<Vec<SocketAddr>>,
    next: Arc<AtomicUsize>,
    armed: Arc<Mutex<Armed>>,
    /// Connections forwarded to each upstream.
    served: Arc<Mutex<Vec<usize>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl RoundRobin {
    pub fn start(upstreams: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the balancer");
        let lb = Self {
            addr: listener.local_addr().expect("addr"),
            served: Arc::new(Mutex::new(vec![0; upstreams.len()])),
            upstreams: Arc::new(upstreams),
            next: Arc::default(),
            armed: Arc::default(),
            down: Arc::default(),
        };
        let accepting = lb.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let lb = accepting.clone();
                std::thread::spawn(move || lb.relay(client));
            }
        });
        lb
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While down, every connection is closed at once: the network is gone, as a device sees it.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Sends every new connection to upstream `index` until an event push has been forwarded to
    /// it, then kills process `pid` with SIGKILL.
    pub fn kill_during_next_event_push(&self, index: usize, pid: u32) {
        *self.armed.lock().unwrap() = Armed {
            target: Some((index, pid)),
            fired: false,
        };
    }

    /// True once the armed kill has happened.
    pub fn killed(&self) -> bool {
        self.armed.lock().unwrap().fired
    }

    /// How many connections each upstream has been given.
    pub fn served(&self) -> Vec<usize> {
        self.served.lock().unwrap().clone()
    }

    fn connect(&self) -> Option<(usize, TcpStream)> {
        if let Some((index, _)) = self.armed.lock().unwrap().target {
            let s = TcpStream::connect(self.upstreams[index]).ok()?;
            return Some((index, s));
        }
        for _ in 0..self.upstreams.len() {
            let i = self.next.fetch_add(1, Ordering::SeqCst) % self.upstreams.len();
            if let Ok(s) = TcpStream::connect(self.upstreams[i]) {
                return Some((i, s));
            }
        }
        None
    }

    fn relay(&self, client: TcpStream) {
        if self.down.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        let Some((index, upstream)) = self.connect() else {
            let _ = client.shutdown(Shutdown::Both);
            return;
        };
        self.served.lock().unwrap()[index] += 1;
        let (mut from_client, mut to_upstream) = (client.try_clone().unwrap(), upstream);
        let (mut from_upstream, mut to_client) = (to_upstream.try_clone().unwrap(), client);
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_upstream, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to_upstream.write_all(&buf[..n]).is_err() {
                break;
            }
            let push = buf[..n].windows(16).any(|w| w == b"POST /v1/events ");
            if push {
                self.maybe_kill(index);
            }
        }
        let _ = to_upstream.shutdown(Shutdown::Write);
        let _ = back.join();
    }

    fn maybe_kill(&self, index: usize) {
        let mut armed = self.armed.lock().unwrap();
        let Some((target, pid)) = armed.target else {
            return;
        };
        if target != index {
            return;
        }
        // Let the request's bytes reach the instance, then kill it before it can answer for sure.
        std::thread::sleep(Duration::from_millis(2));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        armed.target = None;
        armed.fired = true;
    }
}
