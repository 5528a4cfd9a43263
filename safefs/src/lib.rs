//! File work that stays where it is put, shared by the CLI, the engine and the runtime:
//! paths resolved inside a root by the kernel ([`inroot`], `openat2`) or by hand over a
//! tree that may hold hostile links ([`safepath`]), atomic writes ([`atomic`]), the tar
//! streams `cp` and `watch` send ([`archive`]), ID mappings of file owners ([`idmap`]),
//! descriptor hygiene ([`fds`]), and removing a tree never through a mount left in it
//! ([`mounts`]).

pub mod archive;
pub mod atomic;
pub mod fds;
pub mod idmap;
pub mod inroot;
pub mod mounts;
pub mod safepath;
