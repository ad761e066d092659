//! A memory limit for a group of processes: a cgroup the kernel enforces.
//!
//! cgroup v2 (one hierarchy at `/sys/fs/cgroup`): a directory with `memory.max` and
//! `cgroup.procs`. cgroup v1 (a hierarchy per controller): the same under
//! `/sys/fs/cgroup/memory`, the limit in `memory.limit_in_bytes`. The group is removed
//! when dropped (the kernel refuses while a process is still in it, so it is dropped
//! after the container ended).

use std::path::PathBuf;

/// A memory cgroup made for one container.
pub struct MemoryGroup {
    dir: PathBuf,
    procs: &'static str,
}

impl MemoryGroup {
    /// Makes a group limited to `bytes`, or says why it cannot.
    pub fn create(bytes: u64) -> Result<MemoryGroup, String> {
        let name = format!("hv-container-{}", std::process::id());
        let v2 = PathBuf::from("/sys/fs/cgroup/cgroup.controllers");
        let (dir, limit_file, procs) = if v2.exists() {
            (PathBuf::from("/sys/fs/cgroup").join(&name), "memory.max", "cgroup.procs")
        } else {
            (PathBuf::from("/sys/fs/cgroup/memory").join(&name), "memory.limit_in_bytes", "cgroup.procs")
        };
        std::fs::create_dir(&dir).map_err(|e| format!("cannot make the cgroup {}: {e}", dir.display()))?;
        let group = MemoryGroup { dir, procs };
        std::fs::write(group.dir.join(limit_file), bytes.to_string()).map_err(|e| format!("cannot set {limit_file}: {e}"))?;
        Ok(group)
    }

    /// Puts process `pid` (and so its future children) in the group.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        std::fs::write(self.dir.join(self.procs), pid.to_string()).map_err(|e| format!("cannot move the container into its cgroup: {e}"))
    }
}

impl Drop for MemoryGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
