//! Answers of the embedded DNS server of one network (its socket is `dns_server`):
//! A/AAAA for the names of the containers on that network (service names with every
//! replica, round-robin; container names; aliases), PTR for their addresses, and
//! "forward" for everything else, which the server sends on to the host's resolvers.
//! Each network has its own [`Zone`], so a container only resolves what shares a network
//! with it. The wire format is hickory-proto's.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Docker's embedded DNS answers with a short TTL: containers come and go.
pub const TTL: u32 = 600;

#[derive(Debug, Default)]
pub struct Zone {
    names: HashMap<String, Entry>,
    reverse: HashMap<IpAddr, String>,
}

/// A name's addresses, and its own rotation: with one counter for the zone, the other
/// names' queries between two of a name's could keep landing it on the same replica.
#[derive(Debug, Default)]
struct Entry {
    addrs: Vec<IpAddr>,
    turn: AtomicUsize,
}

/// What to do with a query.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not ours: ask the host's resolvers.
    Forward,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    /// Registers a container's address under its names (service, container name,
    /// aliases); the first name answers PTR queries.
    pub fn add(&mut self, names: &[&str], ip: IpAddr) {
        for n in names {
            let v = &mut self.names.entry(key(n)).or_default().addrs;
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
        if let Some(first) = names.first() {
            self.reverse.insert(ip, key(first));
        }
    }

    /// Forgets an address (its container stopped or was recreated).
    pub fn remove(&mut self, ip: IpAddr) {
        for n in self.names.values_mut() {
            n.addrs.retain(|a| *a != ip);
        }
        self.names.retain(|_, n| !n.addrs.is_empty());
        self.reverse.remove(&ip);
    }

    /// The addresses of `name` of one family, rotated one step per call.
    fn lookup(&self, name: &str, v6: bool) -> Option<Vec<IpAddr>> {
        let entry = self.names.get(&key(name))?;
        let mut v: Vec<IpAddr> = entry.addrs.iter().copied().filter(|a| a.is_ipv6() == v6).collect();
        if !v.is_empty() {
            let n = entry.turn.fetch_add(1, Ordering::Relaxed) % v.len();
            v.rotate_left(n);
        }
        Some(v)
    }

    /// Answers a DNS query in wire format.
    pub fn answer(&self, query: &[u8]) -> Reply {
        let Ok(msg) = Message::from_vec(query) else {
            return Reply::Forward;
        };
        let [q] = msg.queries.as_slice() else {
            return Reply::Forward;
        };
        let qname = q.name().to_ascii();
        let mut resp = Message::new(msg.metadata.id, MessageType::Response, OpCode::Query);
        resp.metadata.recursion_desired = msg.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.metadata.authoritative = true;
        resp.add_query(q.clone());
        match q.query_type() {
            t @ (RecordType::A | RecordType::AAAA) => {
                let Some(addrs) = self.lookup(&qname, t == RecordType::AAAA) else {
                    return Reply::Forward;
                };
                for a in addrs {
                    let rdata = match a {
                        IpAddr::V4(v4) => RData::A(A(v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                    };
                    resp.add_answer(Record::from_rdata(q.name().clone(), TTL, rdata));
                }
            }
            RecordType::PTR => {
                let Some(ip) = parse_reverse(&qname) else {
                    return Reply::Forward;
                };
                let Some(target) = self.reverse.get(&ip) else {
                    return Reply::Forward;
                };
                let Ok(name) = Name::from_ascii(format!("{target}.")) else {
                    return Reply::Forward;
                };
                resp.add_answer(Record::from_rdata(q.name().clone(), TTL, RData::PTR(PTR(name))));
            }
            // Another type for one of our names: the name exists, with no such data.
            _ if self.names.contains_key(&key(&qname)) => {}
            _ => return Reply::Forward,
        }
        resp.metadata.response_code = ResponseCode::NoError;
        match resp.to_vec() {
            Ok(b) => Reply::Answer(b),
            Err(_) => Reply::Forward,
        }
    }
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa.`, nibbles `.ip6.arpa.`).
pub fn parse_reverse(name: &str) -> Option<IpAddr> {
    let n = key(name);
    if let Some(rest) = n.strip_suffix(".in-addr.arpa") {
        let mut parts: Vec<u8> = rest.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        if parts.len() != 4 {
            return None;
        }
        parts.reverse();
        return Some(IpAddr::from([parts[0], parts[1], parts[2], parts[3]]));
    }
    let rest = n.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|v| *v < 16 && p.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.iter().rev().collect::<Vec<_>>().chunks(2).enumerate() {
        bytes[i] = (pair[0] << 4) | pair[1];
    }
    Some(IpAddr::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(zone: &Zone, name: &str, t: RecordType) -> Option<Message> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        match zone.answer(&m.to_vec().unwrap()) {
            Reply::Answer(b) => Some(Message::from_vec(&b).unwrap()),
            Reply::Forward => None,
        }
    }

    fn addrs(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                RData::PTR(p) => p.0.to_ascii(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn zone() -> Zone {
        let mut z = Zone::default();
        z.add(&["p-web-1", "web", "frontend"], "172.18.0.2".parse().unwrap());
        z.add(&["p-web-2", "web"], "172.18.0.3".parse().unwrap());
        z.add(&["p-db-1", "db"], "172.18.0.4".parse().unwrap());
        z.add(&["p-db-1", "db"], "fd00::4".parse().unwrap());
        z
    }

    #[test]
    fn service_container_and_alias_names() {
        let z = zone();
        let m = ask(&z, "p-web-1", RecordType::A).unwrap();
        assert_eq!(
            (m.metadata.id, m.metadata.message_type, m.metadata.response_code),
            (0x1234, MessageType::Response, ResponseCode::NoError)
        );
        assert_eq!(addrs(&m), vec!["172.18.0.2"]);
        assert_eq!(addrs(&ask(&z, "FrontEnd.", RecordType::A).unwrap()), vec!["172.18.0.2"]);
        assert_eq!(addrs(&ask(&z, "db", RecordType::AAAA).unwrap()), vec!["fd00::4"]);
        // A name without data of that family exists: an empty answer, not a forward.
        assert!(ask(&z, "web", RecordType::AAAA).unwrap().answers.is_empty());
        assert!(ask(&z, "web", RecordType::MX).unwrap().answers.is_empty());
    }

    #[test]
    fn replicas_round_robin() {
        let z = zone();
        let firsts: Vec<String> = (0..4)
            .map(|_| addrs(&ask(&z, "web", RecordType::A).unwrap())[0].clone())
            .collect();
        assert!(
            firsts.contains(&"172.18.0.2".to_string()) && firsts.contains(&"172.18.0.3".to_string()),
            "{firsts:?}"
        );
        assert_eq!(addrs(&ask(&z, "web", RecordType::A).unwrap()).len(), 2);
    }

    #[test]
    fn each_name_rotates_on_its_own() {
        let z = zone();
        // Another name asked between each two of web's queries (two replicas): with one
        // counter for the zone, web would always come first with the same address.
        let firsts: Vec<String> = (0..4)
            .map(|_| {
                ask(&z, "db", RecordType::A).unwrap();
                addrs(&ask(&z, "web", RecordType::A).unwrap())[0].clone()
            })
            .collect();
        assert_ne!(firsts[0], firsts[1], "{firsts:?}");
    }

    #[test]
    fn reverse_and_forward() {
        let mut z = zone();
        assert_eq!(
            addrs(&ask(&z, "4.0.18.172.in-addr.arpa", RecordType::PTR).unwrap()),
            vec!["p-db-1."]
        );
        assert_eq!(
            parse_reverse("4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."),
            Some("fd00::4".parse().unwrap())
        );
        assert_eq!(
            addrs(
                &ask(
                    &z,
                    "4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
                    RecordType::PTR
                )
                .unwrap()
            ),
            vec!["p-db-1."]
        );
        // Not ours: the host's resolvers answer.
        assert!(ask(&z, "example.com", RecordType::A).is_none());
        assert!(ask(&z, "9.9.9.9.in-addr.arpa", RecordType::PTR).is_none());
        assert_eq!(z.answer(b"garbage"), Reply::Forward);
        // A stopped container disappears at once; its service keeps the other replica.
        z.remove("172.18.0.2".parse().unwrap());
        assert_eq!(addrs(&ask(&z, "web", RecordType::A).unwrap()), vec!["172.18.0.3"]);
        assert!(ask(&z, "frontend", RecordType::A).is_none());
    }

    #[test]
    fn zones_are_per_network() {
        let front = zone();
        let mut back = Zone::default();
        back.add(&["p-worker-1", "worker"], "172.19.0.2".parse().unwrap());
        assert!(ask(&back, "web", RecordType::A).is_none());
        assert!(ask(&front, "worker", RecordType::A).is_none());
    }
}
