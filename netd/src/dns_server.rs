//! The embedded DNS server of a network: a UDP socket (on the network's gateway address)
//! answering from the network's [`Zone`] and forwarding everything else to the host's
//! resolvers, taken from the host's resolv.conf without its loopback entries (a
//! container cannot reach the host's 127.0.0.53).

use crate::dns::{Reply, Zone};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::UdpSocket;

/// The resolvers of a resolv.conf that a container can reach.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// A SERVFAIL for a query we could not get answered.
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.response_code = ResponseCode::ServFail;
    for query in q.queries {
        r.add_query(query);
    }
    r.to_vec().ok()
}

/// The most upstreams one query is tried on (as resolv.conf's MAXNS), so that a
/// forward ends within a few timeouts however many servers `dns:` lists.
const MAX_UPSTREAMS: usize = 3;

async fn forward(query: &[u8], upstreams: &[SocketAddr], timeout: Duration) -> Option<Vec<u8>> {
    for up in upstreams.iter().take(MAX_UPSTREAMS) {
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(timeout, sock.recv(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

/// Serves queries on `socket` from one zone until the task is dropped.
pub async fn serve(socket: UdpSocket, zone: Arc<RwLock<Zone>>, upstreams: Vec<SocketAddr>) -> std::io::Result<()> {
    let answer = move |_: IpAddr, q: &[u8]| {
        Some(match zone.read() {
            Ok(z) => z.answer(q),
            Err(_) => Reply::Forward,
        })
    };
    serve_with(socket, Arc::new(answer), upstreams).await
}

/// Decides for one query from one asker: `None` drops it (an asker that is not on the
/// network gets no answer at all, as from Docker's resolver).
pub type Answerer = Arc<dyn Fn(IpAddr, &[u8]) -> Option<Reply> + Send + Sync>;

/// Serves queries on `socket`, answered by `answer`, until the task is dropped (the
/// forwards under way go with it).
pub async fn serve_with(socket: UdpSocket, answer: Answerer, upstreams: Vec<SocketAddr>) -> std::io::Result<()> {
    let socket = Arc::new(socket);
    let upstreams = Arc::new(upstreams);
    let mut forwards = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        while forwards.try_join_next().is_some() {}
        let query = buf[..n].to_vec();
        let Some(reply) = answer(from.ip(), &query) else {
            continue;
        };
        match reply {
            Reply::Answer(b) => {
                let _ = socket.send_to(&b, from).await;
            }
            // Each forward holds a socket: past the cap a query is dropped (the asker
            // retries), so a flood cannot take the engine's descriptors. What is not
            // a DNS message is never passed on.
            Reply::Forward if forwards.len() >= MAX_FORWARDS || Message::from_vec(&query).is_err() => {}
            Reply::Forward => {
                let (socket, upstreams) = (socket.clone(), upstreams.clone());
                forwards.spawn(async move {
                    let answer = match forward(&query, &upstreams, Duration::from_secs(2)).await {
                        Some(a) => Some(a),
                        None => servfail(&query),
                    };
                    if let Some(a) = answer {
                        let _ = socket.send_to(&a, from).await;
                    }
                });
            }
        }
    }
}

/// The most queries one server forwards at once.
const MAX_FORWARDS: usize = 64;
/// As [`forward`], over TCP (a two-byte length before each message).
async fn forward_tcp(query: &[u8], upstreams: &[SocketAddr], timeout: Duration) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let len = u16::try_from(query.len()).ok()?;
    for up in upstreams.iter().take(MAX_UPSTREAMS) {
        let ask = async {
            let mut c = tokio::net::TcpStream::connect(up).await?;
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(query);
            c.write_all(&framed).await?;
            let mut n = [0u8; 2];
            c.read_exact(&mut n).await?;
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(n))];
            c.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        if let Ok(Ok(a)) = tokio::time::timeout(timeout, ask).await {
            return Some(a);
        }
    }
    None
}

/// The most TCP connections served at once by one server: a container that opens
/// more is refused, and harms only its own lookups.
const MAX_TCP: usize = 32;
/// The most queries one TCP connection asks, and how long it may be idle.
const TCP_QUERIES: usize = 64;
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Serves DNS over TCP on `listener` (each message after its two-byte length, RFC
/// 7766), answered as [`serve_with`] answers; for answers too long for UDP.
pub async fn serve_tcp_with(
    listener: tokio::net::TcpListener,
    answer: Answerer,
    upstreams: Vec<SocketAddr>,
) -> std::io::Result<()> {
    let upstreams = Arc::new(upstreams);
    // Owned here: the sessions go when the server does.
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while sessions.try_join_next().is_some() {}
        let (conn, from) = match accepted {
            Ok(a) => a,
            // Out of descriptors, or a connection reset before it was taken: the
            // server goes on.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if sessions.len() >= MAX_TCP {
            continue;
        }
        let (answer, upstreams) = (answer.clone(), upstreams.clone());
        sessions.spawn(async move {
            let _ = tcp_session(conn, from.ip(), &answer, &upstreams).await;
        });
    }
}

async fn tcp_session(
    mut conn: tokio::net::TcpStream,
    from: IpAddr,
    answer: &Answerer,
    upstreams: &[SocketAddr],
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idle = |e| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
    for _ in 0..TCP_QUERIES {
        let mut len = [0u8; 2];
        tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len))
            .await
            .map_err(idle)??;
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut query))
            .await
            .map_err(idle)??;
        let reply = match answer(from, &query) {
            None => return Ok(()),
            Some(Reply::Answer(b)) => Some(b),
            Some(Reply::Forward) if Message::from_vec(&query).is_err() => return Ok(()),
            // Over TCP to the upstream too: an answer too long for UDP comes whole.
            Some(Reply::Forward) => match forward_tcp(&query, upstreams, Duration::from_secs(2)).await {
                Some(a) => Some(a),
                None => servfail(&query),
            },
        };
        let Some(reply) = reply.filter(|r| r.len() <= usize::from(u16::MAX)) else {
            return Ok(());
        };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        conn.write_all(&framed).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    async fn ask(server: SocketAddr, name: &str) -> Message {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(&query(name), server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), c.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    #[test]
    fn resolvers_without_loopback() {
        let conf = "# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fd00::1\nsearch x\n";
        assert_eq!(
            upstreams(conf),
            vec!["10.0.0.2:53".parse().unwrap(), "[fd00::1]:53".parse().unwrap()]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn answers_from_the_zone_and_forwards_the_rest() {
        // An upstream resolver of our own, on loopback, that knows example.com.
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = upstream.recv_from(&mut buf).await {
                let q = Message::from_vec(&buf[..n]).unwrap();
                let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
                r.add_query(q.queries[0].clone());
                r.add_answer(Record::from_rdata(
                    q.queries[0].name().clone(),
                    60,
                    RData::A(A("203.0.113.7".parse().unwrap())),
                ));
                upstream.send_to(&r.to_vec().unwrap(), from).await.unwrap();
            }
        });
        let mut zone = Zone::default();
        zone.add(&["p-web-1", "web"], "172.18.0.2".parse().unwrap());
        let zone = Arc::new(RwLock::new(zone));
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = sock.local_addr().unwrap();
        let task = tokio::spawn(serve(sock, zone.clone(), vec![up_addr]));

        let m = ask(server, "web").await;
        assert_eq!(m.answers.len(), 1);
        let m = ask(server, "example.com").await;
        assert!(matches!(&m.answers[0].data, RData::A(a) if a.0.to_string() == "203.0.113.7"));
        // Updated at once when a container goes.
        zone.write().unwrap().remove("172.18.0.2".parse().unwrap());
        let m = ask(server, "web").await;
        assert_eq!(m.answers.len(), 1, "now forwarded, and the upstream answers everything");
        task.abort();
    }

    /// One query for `name` over the TCP connection `c`, and its answer.
    async fn ask_tcp(c: &mut tokio::net::TcpStream, name: &str) -> Message {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let q = query(name);
        c.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        c.write_all(&q).await.unwrap();
        let mut len = [0u8; 2];
        c.read_exact(&mut len).await.unwrap();
        let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut r).await.unwrap();
        Message::from_vec(&r).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn over_tcp_several_queries_on_one_connection_and_a_cap_on_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut zone = Zone::default();
        zone.add(&["web"], "172.18.0.2".parse().unwrap());
        let zone = Arc::new(RwLock::new(zone));
        let answer: Answerer = Arc::new(move |_, q: &[u8]| Some(zone.read().unwrap().answer(q)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let task = tokio::spawn(serve_tcp_with(listener, answer, vec![]));
        let mut c = tokio::net::TcpStream::connect(server).await.unwrap();
        for (name, code) in [("web", ResponseCode::NoError), ("example.com", ResponseCode::ServFail)] {
            let m = ask_tcp(&mut c, name).await;
            assert_eq!(m.metadata.response_code, code, "{name}");
        }
        // A name it does not know goes to the upstream over TCP, whole.
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        let long = tokio::spawn(async move {
            let (mut s, _) = up.accept().await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).await.unwrap();
            let q = Message::from_vec(&q).unwrap();
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.add_query(q.queries[0].clone());
            // More addresses than a 512-byte UDP answer holds.
            for i in 0..60u8 {
                r.add_answer(Record::from_rdata(
                    q.queries[0].name().clone(),
                    60,
                    RData::A(A(std::net::Ipv4Addr::new(198, 51, 100, i))),
                ));
            }
            let b = r.to_vec().unwrap();
            s.write_all(&(b.len() as u16).to_be_bytes()).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let answer2: Answerer = Arc::new(|_, _: &[u8]| Some(Reply::Forward));
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s2 = l2.local_addr().unwrap();
        let t2 = tokio::spawn(serve_tcp_with(l2, answer2, vec![up_addr]));
        let mut c2 = tokio::net::TcpStream::connect(s2).await.unwrap();
        assert_eq!(ask_tcp(&mut c2, "many.example").await.answers.len(), 60);
        long.await.unwrap();
        t2.abort();
        // Past MAX_TCP idle connections held open, a new one is closed at once.
        let mut held = Vec::new();
        for _ in 0..MAX_TCP - 1 {
            held.push(tokio::net::TcpStream::connect(server).await.unwrap());
        }
        let mut extra = tokio::net::TcpStream::connect(server).await.unwrap();
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut b)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
        task.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flood_of_queries_to_forward_holds_at_most_the_cap_of_sockets() {
        // An upstream that never answers: each forward waits out its timeout.
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = sock.local_addr().unwrap();
        let task = tokio::spawn(serve(sock, Arc::new(RwLock::new(Zone::default())), vec![up_addr]));
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for _ in 0..MAX_FORWARDS + 40 {
            c.send_to(&query("example.com"), server).await.unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        let mut buf = vec![0u8; 4096];
        // Within the forwards' timeout, no slot comes free.
        let until = tokio::time::Instant::now() + Duration::from_millis(1500);
        while let Ok(Ok((_, from))) = tokio::time::timeout_at(until, upstream.recv_from(&mut buf)).await {
            seen.insert(from);
        }
        assert_eq!(seen.len(), MAX_FORWARDS);
        task.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_upstream_is_a_servfail() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = sock.local_addr().unwrap();
        let task = tokio::spawn(serve(sock, Arc::new(RwLock::new(Zone::default())), vec![]));
        let m = ask(server, "example.com").await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        task.abort();
    }
}
