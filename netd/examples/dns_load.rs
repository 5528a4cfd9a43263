//! A DNS load generator for `scripts/bench-net.sh`: A queries for one name to one
//! server over UDP, `window` in flight at a time, for `count` queries; prints the rate
//! and the latency percentiles. Run inside a container's network namespace (`nsenter
//! -n`), it asks as that container does.
//!
//! `dns_load SERVER NAME [COUNT] [WINDOW]`

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: dns_load SERVER NAME [COUNT] [WINDOW]");
        std::process::exit(2);
    }
    let server: SocketAddr = format!("{}:53", args[1]).parse().expect("a server address");
    let name = Name::from_ascii(&args[2]).expect("a name");
    let count: usize = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(20000);
    let window: usize = args.get(4).and_then(|w| w.parse().ok()).unwrap_or(16);
    let sock = UdpSocket::bind("0.0.0.0:0").expect("a socket");
    sock.connect(server).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let query = |id: u16| {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.to_vec().expect("a query")
    };
    let mut in_flight: HashMap<u16, Instant> = HashMap::new();
    let mut latencies: Vec<Duration> = Vec::with_capacity(count);
    let (mut sent, mut lost, mut empty) = (0usize, 0usize, 0usize);
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while latencies.len() + lost < count {
        while in_flight.len() < window && sent < count {
            let id = (sent % 65536) as u16;
            in_flight.insert(id, Instant::now());
            sock.send(&query(id)).expect("send");
            sent += 1;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let Ok(m) = Message::from_vec(&buf[..n]) else { continue };
                if let Some(t) = in_flight.remove(&m.metadata.id) {
                    latencies.push(t.elapsed());
                    if m.answers.is_empty() {
                        empty += 1;
                    }
                }
            }
            Err(_) => {
                // Whatever has waited half a second is lost.
                lost += in_flight.len();
                in_flight.clear();
            }
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e6)
            .unwrap_or(0.0)
    };
    println!(
        "dns: {} answers in {:.2}s: {:.0} queries/s, p50 {:.0} us, p99 {:.0} us, lost {lost}, without an address {empty}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
    );
}
