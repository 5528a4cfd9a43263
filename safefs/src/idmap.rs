//! A user namespace's ID mapping, as file ownership sees it: what `cp` and the runtime
//! turn container IDs into.

use serde::{Deserialize, Serialize};

/// A user namespace's mapping: container IDs `0..size` are host `uid..`/`gid..`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

impl IdMap {
    /// The host UID of the container's `id`; `None` when the range does not hold it.
    pub fn host_uid(&self, id: u64) -> Option<u32> {
        Self::host(self.uid, self.size, id)
    }

    /// The host GID of the container's `id`; `None` when the range does not hold it.
    pub fn host_gid(&self, id: u64) -> Option<u32> {
        Self::host(self.gid, self.size, id)
    }

    fn host(base: u32, size: u32, id: u64) -> Option<u32> {
        u32::try_from(id)
            .ok()
            .filter(|i| *i < size)
            .and_then(|i| base.checked_add(i))
    }
}
