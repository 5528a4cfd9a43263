//! Isolation between networks, as Docker's isolation chains give it: a container on one
//! network does not reach a container on another by its address, in either direction,
//! whether or not the NAT of `nat` is in use (that one is nftables; this one is not, so
//! that it holds on a host without `nft`).
//!
//! It is policy routing, in the kernel's routing decision for forwarded packets: an
//! engine has a routing table of its own holding a `blackhole` route for every subnet
//! of its networks, and one rule per network bridge, `iif <bridge> lookup <table>`,
//! ahead of the main table. A packet that comes in from a bridge and is to be routed to
//! any network's subnet is dropped there; what is not a network's falls through to the
//! main table (the outside, published ports). Traffic within one network is bridged, not
//! routed, and the bridge's own gateway address is the local table's, which comes before
//! every rule: neither meets the table. Traffic from the host (its proxy, DNAT from
//! outside) does not come in from a bridge.
//!
//! Rules and routes are made from the engine's state each time it changes and whatever
//! is in the table that the state does not name is removed, so a crash leaves nothing
//! that the next start does not correct. The operations are a trait, [`Policy`], so that
//! the reconciliation is tested without root on a fake.

use crate::links::{LinkError, Rtnl};
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{IpVersion, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The rules' priority: after the local table (0), before the main one (32766).
pub const PRIORITY: u32 = 32000;

/// A rule of the engine's: packets coming in from `iif` look up its table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub v6: bool,
    pub iif: String,
}

/// A network as isolation sees it: its bridge and its subnets (IPv4, and IPv6 with
/// `enable_ipv6`).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub bridge: String,
    pub subnets: Vec<IpNet>,
}

/// The policy-routing operations isolation needs; a fake implements them for tests.
#[allow(async_fn_in_trait)]
pub trait Policy {
    /// The rules that look up `table`.
    async fn rules(&self, table: u32) -> Result<Vec<Rule>, LinkError>;
    async fn add_rule(&self, rule: &Rule, table: u32) -> Result<(), LinkError>;
    async fn del_rule(&self, rule: &Rule, table: u32) -> Result<(), LinkError>;
    /// The blackhole routes of `table`.
    async fn blackholes(&self, table: u32) -> Result<Vec<IpNet>, LinkError>;
    async fn add_blackhole(&self, net: IpNet, table: u32) -> Result<(), LinkError>;
    async fn del_blackhole(&self, net: IpNet, table: u32) -> Result<(), LinkError>;
}

/// The table of an engine: from its state root, so that engines of different roots in
/// one network namespace keep to their own (as their nftables tables do). Clear of the
/// kernel's reserved tables (0, 253 to 255).
pub fn table_id(root: &std::path::Path) -> u32 {
    let h = crate::links::stable_hash(root.to_string_lossy().bytes());
    0x7263_0000 | (h & 0xffff) as u32
}

/// Makes the rules and blackhole routes of `table` exactly those that `members` need.
/// Blackholes are added before rules (a rule never points at a table that lets traffic
/// through) and rules removed before blackholes. Every error is collected and the work
/// carries on; the errors are returned together.
pub async fn sync(nl: &impl Policy, table: u32, members: &[Member]) -> Result<(), Vec<LinkError>> {
    let mut errors = Vec::new();
    let mut want_nets: Vec<IpNet> = members
        .iter()
        .flat_map(|m| m.subnets.iter().map(IpNet::trunc))
        .collect();
    want_nets.sort();
    want_nets.dedup();
    // IPv6 rules only when some network has IPv6 (a host may have it disabled).
    let families: &[bool] = if want_nets.iter().any(|n| matches!(n, IpNet::V6(_))) {
        &[false, true]
    } else {
        &[false]
    };
    let mut want_rules: Vec<Rule> = members
        .iter()
        .flat_map(|m| {
            families.iter().map(|&v6| Rule {
                v6,
                iif: m.bridge.clone(),
            })
        })
        .collect();
    want_rules.sort();
    want_rules.dedup();

    let have_nets = nl.blackholes(table).await.unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });
    for n in want_nets.iter().filter(|n| !have_nets.contains(n)) {
        if let Err(e) = nl.add_blackhole(*n, table).await {
            errors.push(e);
        }
    }
    let have_rules = nl.rules(table).await.unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });
    for r in want_rules.iter().filter(|r| !have_rules.contains(r)) {
        if let Err(e) = nl.add_rule(r, table).await {
            errors.push(e);
        }
    }
    for r in have_rules.iter().filter(|r| !want_rules.contains(r)) {
        if let Err(e) = nl.del_rule(r, table).await {
            errors.push(e);
        }
    }
    for n in have_nets.iter().filter(|n| !want_nets.contains(n)) {
        if let Err(e) = nl.del_blackhole(*n, table).await {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn nl(what: String) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    move |e| LinkError::Netlink {
        what,
        message: e.to_string(),
    }
}

fn rule_message(rule: &Rule, table: u32) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = if rule.v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.action = RuleAction::ToTable;
    // Tables above 255 are named by the attribute; the header's byte says "see it".
    m.header.table = 252;
    m.attributes.push(RuleAttribute::Table(table));
    m.attributes.push(RuleAttribute::Iifname(rule.iif.clone()));
    m.attributes.push(RuleAttribute::Priority(PRIORITY));
    m
}

fn rule_table(m: &RuleMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn blackhole_message(net: IpNet, table: u32) -> RouteMessage {
    match net {
        IpNet::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.network(), n.prefix_len())
            .table_id(table)
            .kind(RouteType::BlackHole)
            .build(),
        IpNet::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(n.network(), n.prefix_len())
            .table_id(table)
            .kind(RouteType::BlackHole)
            .build(),
    }
}

impl Policy for Rtnl {
    async fn rules(&self, table: u32) -> Result<Vec<Rule>, LinkError> {
        let mut out = Vec::new();
        for (v6, version) in [(false, IpVersion::V4), (true, IpVersion::V6)] {
            let mut s = self.handle().rule().get(version).execute();
            while let Some(m) = s.try_next().await.map_err(nl("listing rules".into()))? {
                if rule_table(&m) != table {
                    continue;
                }
                for a in &m.attributes {
                    if let RuleAttribute::Iifname(i) = a {
                        out.push(Rule { v6, iif: i.clone() });
                    }
                }
            }
        }
        Ok(out)
    }

    async fn add_rule(&self, rule: &Rule, table: u32) -> Result<(), LinkError> {
        let mut req = self.handle().rule().add();
        *req.message_mut() = rule_message(rule, table);
        match req.execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            r => r.map_err(nl(format!("adding the rule iif {} lookup {table}", rule.iif))),
        }
    }

    async fn del_rule(&self, rule: &Rule, table: u32) -> Result<(), LinkError> {
        match self.handle().rule().del(rule_message(rule, table)).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => Ok(()),
            r => r.map_err(nl(format!("removing the rule iif {} lookup {table}", rule.iif))),
        }
    }

    async fn blackholes(&self, table: u32) -> Result<Vec<IpNet>, LinkError> {
        let mut out = Vec::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut s = self.handle().route().get(query).execute();
            while let Some(m) = s.try_next().await.map_err(nl("listing routes".into()))? {
                if route_table(&m) != table || m.header.kind != RouteType::BlackHole {
                    continue;
                }
                let len = m.header.destination_prefix_length;
                let dst = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
                    _ => None,
                });
                if let Some(n) = dst.and_then(|d| IpNet::new(d, len).ok()) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    async fn add_blackhole(&self, net: IpNet, table: u32) -> Result<(), LinkError> {
        match self.handle().route().add(blackhole_message(net, table)).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            r => r.map_err(nl(format!("adding blackhole {net} to table {table}"))),
        }
    }

    async fn del_blackhole(&self, net: IpNet, table: u32) -> Result<(), LinkError> {
        match self.handle().route().del(blackhole_message(net, table)).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
            r => r.map_err(nl(format!("removing blackhole {net} from table {table}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use std::cell::RefCell;

    /// Rules and routes in memory, per table, with the order of operations.
    #[derive(Default)]
    struct Fake {
        rules: RefCell<Vec<(Rule, u32)>>,
        routes: RefCell<Vec<(IpNet, u32)>>,
        log: RefCell<Vec<String>>,
        fail_add_rule: bool,
    }

    impl Policy for Fake {
        async fn rules(&self, table: u32) -> Result<Vec<Rule>, LinkError> {
            Ok(self
                .rules
                .borrow()
                .iter()
                .filter(|r| r.1 == table)
                .map(|r| r.0.clone())
                .collect())
        }
        async fn add_rule(&self, rule: &Rule, table: u32) -> Result<(), LinkError> {
            if self.fail_add_rule {
                return Err(LinkError::Netlink {
                    what: "adding a rule".into(),
                    message: "refused by the fake".into(),
                });
            }
            self.log.borrow_mut().push(format!("+rule {} {}", rule.iif, rule.v6));
            self.rules.borrow_mut().push((rule.clone(), table));
            Ok(())
        }
        async fn del_rule(&self, rule: &Rule, table: u32) -> Result<(), LinkError> {
            self.log.borrow_mut().push(format!("-rule {} {}", rule.iif, rule.v6));
            self.rules.borrow_mut().retain(|r| !(r.0 == *rule && r.1 == table));
            Ok(())
        }
        async fn blackholes(&self, table: u32) -> Result<Vec<IpNet>, LinkError> {
            Ok(self
                .routes
                .borrow()
                .iter()
                .filter(|r| r.1 == table)
                .map(|r| r.0)
                .collect())
        }
        async fn add_blackhole(&self, net: IpNet, table: u32) -> Result<(), LinkError> {
            self.log.borrow_mut().push(format!("+route {net}"));
            self.routes.borrow_mut().push((net, table));
            Ok(())
        }
        async fn del_blackhole(&self, net: IpNet, table: u32) -> Result<(), LinkError> {
            self.log.borrow_mut().push(format!("-route {net}"));
            self.routes.borrow_mut().retain(|r| !(r.0 == net && r.1 == table));
            Ok(())
        }
    }

    fn member(bridge: &str, subnets: &[&str]) -> Member {
        Member {
            bridge: bridge.into(),
            subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn every_bridge_looks_up_a_table_of_every_subnet() {
        let nl = Fake::default();
        let members = [
            member("rc-a", &["172.18.0.0/16"]),
            member("rc-b", &["172.19.0.0/16", "fd00:1::/64"]),
        ];
        block_on(sync(&nl, 7, &members)).unwrap();
        let mut nets = block_on(nl.blackholes(7)).unwrap();
        nets.sort();
        assert_eq!(
            nets,
            ["172.18.0.0/16", "172.19.0.0/16", "fd00:1::/64"].map(|s| s.parse::<IpNet>().unwrap())
        );
        let mut rules = block_on(nl.rules(7)).unwrap();
        rules.sort();
        let iifs: Vec<_> = rules.iter().map(|r| (r.iif.as_str(), r.v6)).collect();
        assert_eq!(iifs, [("rc-a", false), ("rc-b", false), ("rc-a", true), ("rc-b", true)]);
        // Without IPv6 networks, no IPv6 rules.
        let v4 = Fake::default();
        block_on(sync(&v4, 7, &members[..1])).unwrap();
        assert_eq!(
            block_on(v4.rules(7)).unwrap(),
            [Rule {
                v6: false,
                iif: "rc-a".into()
            }]
        );
        // The table is complete before any rule points at it.
        let log = nl.log.borrow().clone();
        let first_rule = log.iter().position(|l| l.starts_with("+rule")).unwrap();
        assert!(
            log[..first_rule].iter().filter(|l| l.starts_with("+route")).count() == 3,
            "{log:?}"
        );
        // Again: nothing to do.
        nl.log.borrow_mut().clear();
        block_on(sync(&nl, 7, &members)).unwrap();
        assert!(nl.log.borrow().is_empty(), "{:?}", nl.log.borrow());
    }

    #[test]
    fn what_the_state_no_longer_names_goes_and_other_tables_stay() {
        let nl = Fake::default();
        // Another engine's table, and a leftover of a crash in this one.
        nl.rules.borrow_mut().push((
            Rule {
                v6: false,
                iif: "rc-other".into(),
            },
            8,
        ));
        nl.routes.borrow_mut().push(("10.9.0.0/24".parse().unwrap(), 8));
        nl.rules.borrow_mut().push((
            Rule {
                v6: false,
                iif: "rc-gone".into(),
            },
            7,
        ));
        nl.routes.borrow_mut().push(("10.8.0.0/24".parse().unwrap(), 7));
        block_on(sync(&nl, 7, &[member("rc-a", &["10.1.0.0/24"])])).unwrap();
        let log = nl.log.borrow().clone();
        assert!(log.contains(&"-rule rc-gone false".to_string()), "{log:?}");
        assert!(log.contains(&"-route 10.8.0.0/24".to_string()), "{log:?}");
        // The rule goes before the route it used.
        let r = log.iter().position(|l| l == "-rule rc-gone false").unwrap();
        let n = log.iter().position(|l| l == "-route 10.8.0.0/24").unwrap();
        assert!(r < n, "{log:?}");
        assert_eq!(block_on(nl.rules(8)).unwrap().len(), 1);
        assert_eq!(block_on(nl.blackholes(8)).unwrap().len(), 1);
        // No network left: the table is empty.
        block_on(sync(&nl, 7, &[])).unwrap();
        assert!(block_on(nl.rules(7)).unwrap().is_empty());
        assert!(block_on(nl.blackholes(7)).unwrap().is_empty());
    }

    #[test]
    fn errors_are_collected_and_the_rest_is_done() {
        let nl = Fake {
            fail_add_rule: true,
            ..Default::default()
        };
        let e = block_on(sync(&nl, 7, &[member("rc-a", &["10.1.0.0/24"])])).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].to_string().contains("refused by the fake"));
        assert_eq!(block_on(nl.blackholes(7)).unwrap().len(), 1);
    }

    #[test]
    fn tables_differ_by_root_and_avoid_the_reserved_ones() {
        let a = table_id(std::path::Path::new("/var/lib/rcompose"));
        let b = table_id(std::path::Path::new("/tmp/x"));
        assert_ne!(a, b);
        for t in [a, b] {
            assert!(t > 255);
        }
    }
}
