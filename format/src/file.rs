//! Reading the files lpkg is handed (packages, keys): bounded and never blocking, whatever
//! the path names.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::Error;

/// The largest package file read (spec/lpkg-format.md, "Limits"): far above a real patch
/// module, far below what a reader should hold in memory for one.
pub const MAX_PACKAGE_LEN: u64 = 64 << 20;

/// Reads a package file (at most [`MAX_PACKAGE_LEN`] bytes; see [`read_bounded`]).
pub fn read_package_file(path: &Path) -> Result<Vec<u8>, Error> {
    read_bounded(path, MAX_PACKAGE_LEN, "package")
}

/// Reads `path`, which must be a regular file of at most `max` bytes. Anything else (a FIFO,
/// a device such as `/dev/zero`, a directory, a larger or sparse file) is refused before a byte
/// is read: the file is opened without blocking (a FIFO would wait for a writer) and checked
/// on the open file, and the read stops past `max` whatever the file does meanwhile.
pub(crate) fn read_bounded(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, Error> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
            what,
        });
    }
    let too_large = |size| Error::FileTooLarge {
        path: path.to_path_buf(),
        what,
        size,
        max,
    };
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Refuses `path` when anyone but its owner (and group) may write it: what it says is trusted.
pub(crate) fn check_not_world_writable(path: &Path, meta: &std::fs::Metadata) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 == 0 {
        return Ok(());
    }
    Err(Error::InsecureFile {
        path: path.to_path_buf(),
        reason: format!(
            "writable by every user (mode {mode:04o}): anyone could add a trusted key; \
             chmod o-w it"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_directories_and_large_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |path: &Path| read_bounded(path, 1024, "package").unwrap_err();
        assert!(matches!(
            refused(Path::new("/dev/zero")),
            Error::NotAFile { .. }
        ));
        assert!(matches!(refused(dir.path()), Error::NotAFile { .. }));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opening a FIFO without a writer would block: it is opened without blocking.
        assert!(matches!(refused(&fifo), Error::NotAFile { .. }));
        let sparse = dir.path().join("sparse");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        assert!(matches!(
            refused(&sparse),
            Error::FileTooLarge { size, .. } if size == 2 << 30
        ));
        let small = dir.path().join("small");
        std::fs::write(&small, b"lpkg").unwrap();
        assert_eq!(read_bounded(&small, 1024, "package").unwrap(), b"lpkg");
        assert!(read_bounded(&small, 3, "package").is_err());
    }
}
