//! Writing credential files: created with their final mode (never chmod'ed after), and
//! never replacing an existing file unless asked, in which case atomically.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path`, created with `mode`. Without `overwrite` the file must not
/// exist (`ErrorKind::AlreadyExists` otherwise); with it, a temporary sibling created
/// with `mode` is renamed over `path`, so readers never see a half-written file.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> io::Result<()> {
    let target = if overwrite {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        path.with_file_name(format!(".{name}.tmp-{:016x}", rand::random::<u64>()))
    } else {
        path.to_owned()
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&target)?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all());
    if overwrite {
        match written.and_then(|_| std::fs::rename(&target, path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&target);
                Err(e)
            }
        }
    } else {
        written
    }
}
