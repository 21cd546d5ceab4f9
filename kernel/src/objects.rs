//! The ELF objects (executable, shared libraries) mapped into a process.

use std::path::PathBuf;

use object::{Object, ReadCache};

use crate::maps::{self, MapEntry};
use crate::{Error, Pid, Result};

/// One ELF file mapped into the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedObject {
    /// Path as /proc/PID/maps shows it (without ` (deleted)`).
    pub path: PathBuf,
    /// Load base: start of the mapping with file offset 0.
    pub base: u64,
    /// GNU build-id of what is really mapped, if the object has one.
    pub build_id: Option<Vec<u8>>,
    /// `/proc/PID/map_files/START-END` of the offset-0 mapping: opens the mapped file itself,
    /// even when the path on disk was replaced or deleted.
    pub map_file: PathBuf,
    /// Every mapping of the object, in address order.
    pub ranges: Vec<MapEntry>,
    /// The file's [`FileKey`] when the object was listed: caches of what is read from the
    /// file find it without asking again.
    key: Option<FileKey>,
}

impl MappedObject {
    /// True when `addr` lies in one of the object's mappings.
    pub fn contains(&self, addr: u64) -> bool {
        self.ranges.iter().any(|r| r.contains(addr))
    }
}

/// Every file-backed ELF object mapped into process `pid`.
///
/// Mappings of one file that follow a mapping at file offset 0 are grouped with it. Files
/// that are not ELF (fonts, locale archives, memfds holding data) are left out.
pub fn mapped_objects(pid: Pid) -> Result<Vec<MappedObject>> {
    mapped_objects_in(pid, &maps::read(pid)?, &[])
}

/// [`mapped_objects`], from the process's mappings read already. An object of `known` (listed
/// from the same process moments ago) whose offset-0 mapping is still the same is taken as it
/// was: its file is not looked at again.
pub fn mapped_objects_in(
    pid: Pid,
    maps: &[MapEntry],
    known: &[MappedObject],
) -> Result<Vec<MappedObject>> {
    // With whether each was known.
    let mut objects: Vec<(MappedObject, bool)> = Vec::new();
    // /proc/PID, or a live thread's directory when the main thread has exited.
    let dir = crate::procfs::mm_dir(pid);
    for entry in maps.iter().cloned() {
        if !entry.is_file() {
            continue;
        }
        let same_file = |o: &MappedObject| {
            let first = &o.ranges[0];
            first.inode == entry.inode && first.dev == entry.dev && first.path == entry.path
        };
        match objects.last_mut() {
            Some((last, _)) if same_file(last) && entry.offset != 0 => last.ranges.push(entry),
            _ if entry.offset == 0 => {
                objects.push(match known.iter().find(|k| k.ranges[0] == entry) {
                    Some(known) => (
                        MappedObject {
                            ranges: vec![entry],
                            ..known.clone()
                        },
                        true,
                    ),
                    None => (
                        MappedObject {
                            path: entry.path.clone().expect("file mappings have a path"),
                            base: entry.start,
                            build_id: None,
                            map_file: dir
                                .join(format!("map_files/{:x}-{:x}", entry.start, entry.end)),
                            ranges: vec![entry],
                            key: None,
                        },
                        false,
                    ),
                })
            }
            // A piece of a file whose offset-0 mapping is not right before it: no load base.
            _ => {}
        }
    }
    let mut elves = Vec::with_capacity(objects.len());
    for (mut object, known) in objects {
        if known {
            elves.push(object);
            continue;
        }
        match cached_build_id(&mut object) {
            Ok(Some(build_id)) => {
                object.build_id = build_id;
                elves.push(object);
            }
            Ok(None) => {} // not an ELF file
            Err(Error::Proc { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // Unmapped since we read the maps (or the process exited).
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(Error::ProcessExited { pid });
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(elves)
}

/// Build-ids of mapped files by the device and inode /proc/PID/maps shows: a scan of every
/// process reads each file once, not once per process that maps it. Shared by the threads of
/// a scan.
#[derive(Debug, Default)]
pub struct BuildIds(std::sync::Mutex<std::collections::HashMap<MapKey, Option<Vec<u8>>>>);

/// A file as /proc/PID/maps names it: device (major, minor) and inode.
type MapKey = ((u32, u32), u64);

/// The offset-0 mapping of the object mapped in `pid` whose build-id is `wanted`, if one is. A file is
/// known by its device and inode in `cache` after its first reading (a hint for choosing
/// processes: apply reads the object again).
pub fn find_build_id(pid: Pid, wanted: &[u8], cache: &BuildIds) -> Result<Option<MapEntry>> {
    let dir = crate::procfs::mm_dir(pid);
    for entry in maps::read(pid)? {
        if !entry.is_file() || entry.offset != 0 {
            continue;
        }
        let key = (entry.dev, entry.inode);
        let known = cache.0.lock().ok().and_then(|ids| ids.get(&key).cloned());
        let id = match known {
            Some(id) => id,
            None => {
                // Read outside the lock: two threads may read one file at once, once.
                let map_file = dir.join(format!("map_files/{:x}-{:x}", entry.start, entry.end));
                match read_build_id(&map_file) {
                    Ok(id) => {
                        let id = id.flatten();
                        if let Ok(mut ids) = cache.0.lock() {
                            ids.insert(key, id.clone());
                        }
                        id
                    }
                    // Unmapped since, or the process exited: nothing known of the file.
                    Err(_) => None,
                }
            }
        };
        if id.as_deref() == Some(wanted) {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// [`read_build_id`] of the file mapped as `object`, read once per file; keeps the file's
/// key in `object`.
fn cached_build_id(object: &mut MappedObject) -> Result<Option<Option<Vec<u8>>>> {
    static BUILD_IDS: FileCache<Option<Option<Vec<u8>>>> = FileCache::new(|_| 1, 4096);
    let key = file_key(object)?;
    object.key = Some(key);
    BUILD_IDS.get(key, || read_build_id(&object.map_file))
}

/// A file read through a read cache, at most [`Capped::BUDGET`] bytes in all: the headers of a
/// file a target maps are the target's to choose, and one that claims a 1.5 GiB section (a
/// sparse file costs nothing to make) must not make lpkg read it. A read past the budget fails,
/// and the parse with it.
#[derive(Clone, Copy)]
pub struct Capped<'a> {
    cache: &'a ReadCache<std::fs::File>,
    left: &'a std::cell::Cell<u64>,
}

impl<'a> Capped<'a> {
    /// What may be read of one file: more than any real object's headers, symbol and CFI
    /// tables need.
    pub const BUDGET: u64 = 48 << 20;

    /// `cache`, with `left` bytes still allowed (start it at [`Capped::BUDGET`]).
    pub fn new(cache: &'a ReadCache<std::fs::File>, left: &'a std::cell::Cell<u64>) -> Capped<'a> {
        Capped { cache, left }
    }
}

impl<'a> object::ReadRef<'a> for Capped<'a> {
    fn len(self) -> std::result::Result<u64, ()> {
        self.cache.len()
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> std::result::Result<&'a [u8], ()> {
        let left = self.left.get().checked_sub(size).ok_or(())?;
        self.left.set(left);
        self.cache.read_bytes_at(offset, size)
    }

    fn read_bytes_at_until(
        self,
        range: std::ops::Range<u64>,
        delimiter: u8,
    ) -> std::result::Result<&'a [u8], ()> {
        let bytes = self.cache.read_bytes_at_until(range, delimiter)?;
        let left = self.left.get().checked_sub(bytes.len() as u64).ok_or(())?;
        self.left.set(left);
        Ok(bytes)
    }
}

/// `Ok(None)` when the file is not ELF; `Ok(Some(None))` for ELF without a build-id.
fn read_build_id(path: &PathBuf) -> Result<Option<Option<Vec<u8>>>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Proc {
        path: path.clone(),
        source,
    })?;
    let cache = ReadCache::new(file);
    let left = std::cell::Cell::new(Capped::BUDGET);
    let data = Capped::new(&cache, &left);
    let mut magic = [0u8; 4];
    match object::ReadRef::read_bytes_at(data, 0, 4) {
        Ok(bytes) => magic.copy_from_slice(bytes),
        Err(()) => return Ok(None),
    }
    if magic != *b"\x7fELF" {
        return Ok(None);
    }
    let elf = object::File::parse(data).map_err(|source| Error::Elf {
        path: path.clone(),
        source,
    })?;
    let id = elf.build_id().map_err(|source| Error::Elf {
        path: path.clone(),
        source,
    })?;
    Ok(Some(id.map(<[u8]>::to_vec)))
}

/// A file as it is now: device, inode, size and modification time (of the file a
/// `/proc/PID/map_files/` link opens). Two processes that map the same key map the same bytes
/// (a file changed in place gets a new modification time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    dev: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
}

/// The [`FileKey`] of the file mapped as `object` (as it was when the object was listed).
pub fn file_key(object: &MappedObject) -> Result<FileKey> {
    use std::os::unix::fs::MetadataExt;
    if let Some(key) = object.key {
        return Ok(key);
    }
    let meta = std::fs::metadata(&object.map_file).map_err(|source| Error::Proc {
        path: object.map_file.clone(),
        source,
    })?;
    Ok(FileKey {
        dev: meta.dev(),
        inode: meta.ino(),
        size: meta.size(),
        modified: (meta.mtime(), meta.mtime_nsec()),
    })
}

/// Values computed from files lately (their bytes, build-id, symbol tables...), by
/// [`FileKey`]: applying to many processes that map the same objects reads each file once.
/// Holds at most `budget` in all, as `weight` counts; the oldest go first.
pub struct FileCache<T> {
    entries: std::sync::Mutex<Vec<(FileKey, T)>>,
    weight: fn(&T) -> usize,
    budget: usize,
}

impl<T: Clone> FileCache<T> {
    /// An empty cache.
    pub const fn new(weight: fn(&T) -> usize, budget: usize) -> FileCache<T> {
        FileCache {
            entries: std::sync::Mutex::new(Vec::new()),
            weight,
            budget,
        }
    }

    /// The value for `key`, from `compute` the first time (an error is not kept).
    pub fn get<E>(&self, key: FileKey, compute: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let known = self.entries.lock().ok().and_then(|entries| {
            entries
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        });
        if let Some(value) = known {
            return Ok(value);
        }
        let value = compute()?;
        let weight = (self.weight)(&value);
        if let Ok(mut entries) = self.entries.lock() {
            let mut total: usize = entries.iter().map(|(_, v)| (self.weight)(v)).sum();
            while total + weight > self.budget && !entries.is_empty() {
                total -= (self.weight)(&entries.remove(0).1);
            }
            if weight <= self.budget {
                entries.push((key, value.clone()));
            }
        }
        Ok(value)
    }
}

/// The largest object file lpkg reads whole (the target object of a package).
const MAX_FILE: u64 = 512 << 20;

static FILES: FileCache<std::sync::Arc<Vec<u8>>> = FileCache::new(|d| d.len(), 16 << 20);

/// The bytes of the file really mapped as `object` (through `/proc/PID/map_files/`), so a file
/// replaced or deleted on disk since the process loaded it is never read by mistake.
pub fn read_file(object: &MappedObject) -> Result<std::sync::Arc<Vec<u8>>> {
    let key = file_key(object)?;
    if key.size > MAX_FILE {
        return Err(Error::Proc {
            path: object.map_file.clone(),
            source: std::io::Error::other(format!(
                "{} bytes, more than lpkg reads of one object ({MAX_FILE})",
                key.size
            )),
        });
    }
    FILES.get(key, || {
        std::fs::read(&object.map_file)
            .map(std::sync::Arc::new)
            .map_err(|source| Error::Proc {
                path: object.map_file.clone(),
                source,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_objects_have_build_ids() {
        let objects = mapped_objects(std::process::id() as Pid).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let me = objects
            .iter()
            .find(|o| o.path == exe)
            .expect("own executable listed");
        assert!(me.contains(own_objects_have_build_ids as fn() as usize as u64));
        let libc = objects
            .iter()
            .find(|o| o.path.to_string_lossy().contains("libc.so"))
            .expect("libc listed");
        assert_eq!(libc.build_id.as_ref().map(Vec::len), Some(20));
        assert_eq!(libc.base % 4096, 0);
    }
}
