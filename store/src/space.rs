//! Free space on the data directory's filesystem, and the reserve writes keep.
//!
//! RocksDB that runs out of space mid-write stops taking writes until it is reopened.
//! So the store refuses writes *before* the disk is full: a sampler thread reads the
//! filesystem's free space every [`SAMPLE_INTERVAL`], and a write is refused with
//! [`crate::Error::InsufficientStorage`] while free space is under the reserve —
//! except deletions (a logout is a small tombstone and must keep working), which are
//! refused only under half the reserve. Writes resume by themselves once space
//! returns: nothing needs a restart.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::error::{Error, Result};

/// How often free space is read.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// Free bytes on the filesystem holding `path` (available to unprivileged users).
pub(crate) fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs(3) writes only into the zeroed struct we pass; `c` is a valid
    // NUL-terminated path for the duration of the call.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

/// The latest free-space sample and the reserve.
#[derive(Debug)]
pub(crate) struct Space {
    free: AtomicU64,
    reserve: u64,
}

impl Space {
    /// Samples `path` now and then every [`SAMPLE_INTERVAL`] while the returned
    /// `Arc` lives. A reserve of 0 disables the check (and the sampler).
    pub fn watch(path: &Path, reserve: u64) -> Arc<Space> {
        let first = free_bytes(path).unwrap_or(u64::MAX);
        let space = Arc::new(Space {
            free: AtomicU64::new(first),
            reserve,
        });
        if reserve > 0 {
            let weak: Weak<Space> = Arc::downgrade(&space);
            let path = path.to_owned();
            let spawned = std::thread::Builder::new()
                .name("store-space".into())
                .spawn(move || loop {
                    std::thread::sleep(SAMPLE_INTERVAL);
                    let Some(space) = weak.upgrade() else { return };
                    match free_bytes(&path) {
                        Ok(free) => {
                            space.free.store(free, Ordering::Relaxed);
                            metrics::gauge!("store_disk_free_bytes").set(free as f64);
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot read free disk space")
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "free-space sampler not started: writes are not guarded against a full disk");
            }
        }
        space
    }

    /// Refuses a write while free space is under the reserve (under half of it for
    /// a write that only deletes).
    pub fn check(&self, deletes_only: bool) -> Result<()> {
        if self.reserve == 0 {
            return Ok(());
        }
        let free = self.free.load(Ordering::Relaxed);
        let needed = if deletes_only {
            self.reserve / 2
        } else {
            self.reserve
        };
        if free < needed {
            metrics::counter!("store_writes_refused_disk_full_total").increment(1);
            return Err(Error::InsufficientStorage {
                free,
                reserve: needed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_under_the_reserve_but_lets_deletes_through_longer() {
        let s = Space {
            free: AtomicU64::new(30),
            reserve: 40,
        };
        assert!(matches!(
            s.check(false),
            Err(Error::InsufficientStorage {
                free: 30,
                reserve: 40
            })
        ));
        assert!(s.check(true).is_ok(), "a delete needs only half the reserve");
        s.free.store(10, Ordering::Relaxed);
        assert!(s.check(true).is_err());
        s.free.store(40, Ordering::Relaxed);
        assert!(s.check(false).is_ok());
        let off = Space {
            free: AtomicU64::new(0),
            reserve: 0,
        };
        assert!(off.check(false).is_ok());
        assert!(free_bytes(Path::new("/")).unwrap() > 0);
    }
}
