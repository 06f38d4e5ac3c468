//! `fault-proxy --upstream HOST:PORT`: the test suite's fault-injecting proxy as a process, for the
//! app window's tests (Node.js). Prints `listening on PORT` once it accepts; faults are set with
//! `POST /__proxy/pace/{bytes_per_sec}/{path_prefix}`, `/__proxy/hold/{path_prefix}` and
//! `/__proxy/clear` (see `cpis_tests::proxy`). Runs until killed.

use std::net::SocketAddr;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let upstream: SocketAddr = match (args.next().as_deref(), args.next()) {
        (Some("--upstream"), Some(addr)) => addr.parse().expect("--upstream HOST:PORT"),
        _ => {
            eprintln!("usage: fault-proxy --upstream HOST:PORT");
            std::process::exit(2);
        }
    };
    let proxy = cpis_tests::proxy::FaultProxy::start(upstream).await;
    println!("listening on {}", proxy.addr.port());
    std::future::pending::<()>().await;
}
