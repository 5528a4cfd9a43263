//! Networks for rcompose: bridges and veths over netlink, IPAM, embedded DNS and
//! published ports (see DESIGN.md). Nothing is built here yet.
