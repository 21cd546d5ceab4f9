//! Reading the records of every package applied to a process.

use lpkg_kernel::memory::Mem;
use lpkg_kernel::{maps, Pid};

use crate::record::Guarded;
use crate::record::{RecordBody, State, HEADER_LEN, MODULE_NAME_PREFIX, NAME_PREFIX};
use crate::Error;

/// A record as found in a live process.
#[derive(Debug, Clone)]
pub struct LiveRecord {
    /// Start of the record mapping.
    pub address: u64,
    /// Length of the record mapping.
    pub len: u64,
    /// Where the package's operation stands.
    pub state: State,
    /// Everything else.
    pub body: RecordBody,
    /// Whether the process's code is what the record says was written.
    pub live: Live,
}

/// Whether the process's code is what a record says its package wrote. Anyone who can write
/// the process's memory (the process itself) can forge a record: it is believed for what
/// lpkg does only where the code agrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// Every entry holds what the record says was written there, or what a newer applied
    /// package stacked on it wrote.
    Intact,
    /// These functions hold something else: the record is forged, or the code was changed
    /// after the package was applied.
    Drifted(Vec<String>),
    /// Not checked: the record is not `applied` (an interrupted operation leaves a mix).
    NotChecked,
}

impl LiveRecord {
    /// Applied, and the live code agrees.
    pub fn is_live(&self) -> bool {
        self.state == State::Applied && self.live == Live::Intact
    }

    /// Whether an entry of this package may hold what the package writes there (its jump, its
    /// new code in place, its call sites): not while the record is `loading`, written before
    /// the first entry is touched; the process's code is then all old.
    pub fn may_have_written(&self) -> bool {
        self.state != State::Loading
    }

    /// The patch code of this package that no thread may be in: when it is reverted (`None`:
    /// everything), or when the functions at `addresses` that it replaced are replaced again
    /// by a stacked package. Each replaced function's new code comes named by function; the
    /// whole module (new and carried functions, stubs) is added for a revert, or when a record
    /// of an older applier does not give a function's new size. A record still `loading` wrote
    /// no entry: its code is only in its module (a thread may be there only if lpkg died while
    /// a check routine ran), and the functions it would replace, new code in place included,
    /// are the old ones, which a thread may run.
    pub fn guarded_code(&self, addresses: Option<&[u64]>) -> Vec<Guarded> {
        let body = &self.body;
        let package = format!("package {} {}", body.name, body.version);
        if !self.may_have_written() {
            return match addresses {
                None => vec![Guarded {
                    range: body.module_address..body.module_address.saturating_add(body.module_len),
                    function: format!("the code of {package}"),
                }],
                Some(_) => Vec::new(),
            };
        }
        let mut whole = addresses.is_none();
        let mut guarded = Vec::new();
        for entry in body
            .entries
            .iter()
            .filter(|e| addresses.is_none_or(|a| a.contains(&e.address)))
        {
            if entry.in_place.is_some() {
                guarded.push(Guarded {
                    range: entry.guarded_range(),
                    function: format!("{} (the new code of {package}, in place)", entry.function),
                });
            }
            if entry.new_size == 0 {
                whole = true;
                continue;
            }
            guarded.push(Guarded {
                range: entry.new_address..entry.new_address.saturating_add(entry.new_size),
                function: format!("{} (the new code of {package})", entry.function),
            });
        }
        if whole {
            guarded.push(Guarded {
                range: body.module_address..body.module_address.saturating_add(body.module_len),
                function: format!("the code of {package}"),
            });
        }
        guarded
    }
}

/// The most records one process holds: far more packages than anyone stacks.
const MAX_RECORDS: usize = 1024;
/// The most record bytes read from one process: what lpkg reads is bounded whatever a target
/// maps (one record memfd mapped a hundred times is read once; a hundred large ones are not).
const MAX_RECORD_BYTES: usize = 32 << 20;

/// Every lpkg record mapped in `pid`, oldest package first.
pub fn read(pid: Pid) -> Result<Vec<LiveRecord>, Error> {
    read_in(pid, &maps::read(pid)?)
}

/// [`read`], with the process's mappings read already.
pub fn read_in(pid: Pid, maps: &[maps::MapEntry]) -> Result<Vec<LiveRecord>, Error> {
    // Memory opened only when there is a record to read (not before a first apply).
    match maps.iter().any(is_record) {
        true => read_with(&Mem::reader(pid)?, maps),
        false => Ok(Vec::new()),
    }
}

/// [`read_in`], through the process's memory opened already.
pub fn read_with(mem: &Mem, maps: &[maps::MapEntry]) -> Result<Vec<LiveRecord>, Error> {
    let pid = mem.pid();
    let mut records = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0usize;
    for entry in maps.iter().filter(|e| is_record(e)) {
        let bad = |reason: String| Error::BadRecord {
            pid,
            address: entry.start,
            reason,
        };
        if !seen.insert((entry.dev, entry.inode)) {
            // The same memfd mapped again: lpkg maps each record once; the first is read.
            continue;
        }
        if records.len() >= MAX_RECORDS {
            return Err(bad(format!(
                "more than {MAX_RECORDS} records in one process"
            )));
        }
        let header = mem.read(entry.start, HEADER_LEN)?;
        if is_unwritten(&header) {
            // Mapped by an apply that died before writing it: an orphan, not a record.
            continue;
        }
        let (state, len) = RecordBody::decode_header(&header).map_err(bad)?;
        if (HEADER_LEN + len) as u64 > entry.end - entry.start {
            return Err(bad(format!("body of {len} bytes runs past the mapping")));
        }
        bytes = bytes.saturating_add(len);
        if bytes > MAX_RECORD_BYTES {
            return Err(bad(format!(
                "records of more than {} MiB in one process",
                MAX_RECORD_BYTES >> 20
            )));
        }
        let body = mem.read(entry.start + HEADER_LEN as u64, len)?;
        let body = RecordBody::decode_body(&body).map_err(bad)?;
        records.push(LiveRecord {
            address: entry.start,
            len: entry.end - entry.start,
            state,
            body,
            live: Live::NotChecked,
        });
    }
    records.sort_by_key(|r| r.body.sequence);
    for index in 0..records.len() {
        records[index].live = live(mem, &records, index);
    }
    Ok(records)
}

/// Checks the entries of `records[index]` against the live code; `records` oldest first.
fn live(mem: &Mem, records: &[LiveRecord], index: usize) -> Live {
    let record = &records[index];
    if record.state != State::Applied {
        return Live::NotChecked;
    }
    let drifted: Vec<String> = record
        .body
        .entries
        .iter()
        .filter(|entry| !in_effect(mem, records, index, entry))
        .map(|entry| entry.function.clone())
        .collect();
    if drifted.is_empty() {
        Live::Intact
    } else {
        Live::Drifted(drifted)
    }
}

/// Whether `entry` of `records[index]` is what runs: its bytes are live, or a newer applied
/// package replaced them, saving exactly them as its original, and is in effect itself.
fn in_effect(
    mem: &Mem,
    records: &[LiveRecord],
    index: usize,
    entry: &crate::record::Entry,
) -> bool {
    let Some(writes) = entry.writes() else {
        return false;
    };
    let live = |w: &crate::record::Write| {
        mem.read(w.address, w.ours.len())
            .is_ok_and(|live| live == w.ours)
    };
    if writes.iter().all(live) {
        return true;
    }
    // A function reached through its call sites is never replaced again (the applier
    // refuses it): nothing newer can stand in for its writes.
    let [write] = writes.as_slice() else {
        return false;
    };
    if !entry.call_sites.is_empty() {
        return false;
    }
    let ours = &write.ours;
    records
        .iter()
        .enumerate()
        .skip(index + 1)
        .filter(|(_, newer)| newer.state == State::Applied)
        .any(|(newer_index, newer)| {
            newer.body.entries.iter().any(|n| {
                n.address == entry.address
                    && crate::record::unhex(&n.original).is_some_and(|o| {
                        !o.is_empty() && (o.starts_with(ours) || ours.starts_with(&o))
                    })
                    && in_effect(mem, records, newer_index, n)
            })
        })
}

/// A record mapping whose header was never written: a memfd reads as zeros until written, and
/// a record's header starts with its magic.
fn is_unwritten(header: &[u8]) -> bool {
    header.iter().all(|&b| b == 0)
}

/// A patch module mapped in a process without a record: lpkg died after mapping it and before
/// creating the record (or while a failed apply was rolled back). Nothing refers to it (jumps
/// are written only once a record exists), so it can be unmapped at any time. Also a record
/// mapping lpkg died before writing (`record`): nothing reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanModule {
    /// The first 16 hex digits of the package id, from the mapping's name.
    pub id_prefix: String,
    /// A record mapping never written, rather than a module.
    pub record: bool,
    /// Start of the mapping.
    pub address: u64,
    /// Length of the mapping (all its parts, whatever their protections).
    pub len: u64,
}

/// The patch modules of `pid` (see [`module_id`]) that no record claims.
///
/// Only meaningful while no other lpkg works on the process: an apply in progress has its
/// module mapped a while before its record (seize the process first to be sure).
pub fn orphaned_modules(pid: Pid) -> Result<Vec<OrphanModule>, Error> {
    orphaned_modules_in(pid, &maps::read(pid)?)
}

/// [`orphaned_modules`], with the process's mappings read already.
pub fn orphaned_modules_in(pid: Pid, maps: &[maps::MapEntry]) -> Result<Vec<OrphanModule>, Error> {
    let mut modules: Vec<(OrphanModule, u64)> = Vec::new();
    for entry in maps {
        let Some(id) = module_id(entry) else {
            continue;
        };
        // mprotect splits a module into one mapping per protection: join the parts.
        match modules.last_mut() {
            Some((last, inode))
                if *inode == entry.inode && last.address + last.len == entry.start =>
            {
                last.len += entry.len();
            }
            _ => modules.push((
                OrphanModule {
                    id_prefix: id.to_owned(),
                    record: false,
                    address: entry.start,
                    len: entry.len(),
                },
                entry.inode,
            )),
        }
    }
    // The records are read only when there are modules to claim (not before a first apply).
    let claimed: Vec<(u64, u64)> = match modules.is_empty() {
        true => Vec::new(),
        false => (read_in(pid, maps)?.iter())
            .map(|r| {
                let start = r.body.module_address;
                (start, start.saturating_add(r.body.module_len))
            })
            .collect(),
    };
    let mut orphans: Vec<OrphanModule> = modules
        .into_iter()
        .map(|(module, _)| module)
        .filter(|m| {
            !claimed
                .iter()
                .any(|&(start, end)| m.address < end && start < m.address + m.len)
        })
        .collect();
    orphans.extend(unwritten_records(pid, maps)?);
    Ok(orphans)
}

/// Whether `entry` maps a record: the start of an `lpkg:` memfd.
fn is_record(entry: &maps::MapEntry) -> bool {
    memfd_id(entry, NAME_PREFIX).is_some() && entry.offset == 0
}

/// Whether `entry` is a mapping lpkg made in the process (a record or a patch module, its
/// memfds named by [`NAME_PREFIX`] or [`MODULE_NAME_PREFIX`]): never an ELF object.
pub fn is_ours(entry: &maps::MapEntry) -> bool {
    memfd_id(entry, NAME_PREFIX).is_some() || memfd_id(entry, MODULE_NAME_PREFIX).is_some()
}

/// What follows `prefix` in the name of a memfd mapping (`/memfd:PREFIXid`), if it is one.
fn memfd_id<'e>(entry: &'e maps::MapEntry, prefix: &str) -> Option<&'e str> {
    entry
        .path
        .as_ref()?
        .to_str()?
        .strip_prefix("/memfd:")?
        .strip_prefix(prefix)
}

/// The package id prefix of a patch module's mapping, if `entry` is one: the record's memfd
/// past file offset 0 (the module shares its record's memfd), or a memfd of its own named
/// `lpkg-module:…` (appliers before the shared memfd, and where memfds are not executable).
fn module_id(entry: &maps::MapEntry) -> Option<&str> {
    memfd_id(entry, MODULE_NAME_PREFIX)
        .or_else(|| memfd_id(entry, NAME_PREFIX).filter(|_| entry.offset != 0))
}

/// Whether the module `body` names is a patch module lpkg mapped for its package: every page
/// of `[module_address, module_address + module_len)` is a mapping of the memfd named after
/// the package's id. A record the process wrote could name any memory.
pub fn module_is_lpkgs(pid: Pid, body: &RecordBody) -> Result<bool, Error> {
    let Some(prefix) = body.id.get(..16) else {
        return Ok(false);
    };
    let (mut at, end) = (
        body.module_address,
        body.module_address.saturating_add(body.module_len),
    );
    for entry in maps::read(pid)? {
        if entry.start == at && at < end && module_id(&entry) == Some(prefix) {
            at = entry.end;
        }
    }
    Ok(body.module_len > 0 && at >= end)
}

/// The record mappings of `pid` whose header was never written.
fn unwritten_records(pid: Pid, maps: &[maps::MapEntry]) -> Result<Vec<OrphanModule>, Error> {
    let mut unwritten = Vec::new();
    for entry in maps {
        let Some(id) = memfd_id(entry, NAME_PREFIX) else {
            continue;
        };
        if entry.offset == 0
            && is_unwritten(&lpkg_kernel::memory::read(pid, entry.start, HEADER_LEN)?)
        {
            unwritten.push(OrphanModule {
                id_prefix: id.to_owned(),
                record: true,
                address: entry.start,
                len: entry.len(),
            });
        }
    }
    Ok(unwritten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Entry;

    #[test]
    fn a_loading_record_guards_only_its_module() {
        let body = RecordBody::decode_body(
            b"id='a'\nname='calc-fix'\nversion='2'\nsigners=[]\napplied_at=1\nsequence=1\n\
              target_path='t'\nmodule_address=0x9000\nmodule_len=0x1000",
        )
        .unwrap();
        let entry = |in_place: Option<Vec<u8>>| Entry {
            function: "compute".into(),
            address: 0x1000,
            size: 0x20,
            original: "5589e55d".into(),
            new_address: 0x9000,
            new_size: 4,
            in_place,
            call_sites: vec![],
        };
        let record = |state, entries| LiveRecord {
            address: 0x8000,
            len: 0x1000,
            state,
            body: RecordBody {
                entries,
                ..body.clone()
            },
            live: Live::NotChecked,
        };
        let ranges = |r: &LiveRecord, addresses: Option<&[u64]>| -> Vec<_> {
            (r.guarded_code(addresses).into_iter())
                .map(|g| (g.range, g.function))
                .collect()
        };
        let module = (0x9000..0xa000, "the code of package calc-fix 2".to_owned());
        for in_place in [None, Some(vec![0x31, 0xc0, 0xc3, 0x90])] {
            // Nothing written yet: the old compute() is the process's own code.
            let loading = record(State::Loading, vec![entry(in_place.clone())]);
            assert!(!loading.may_have_written());
            assert_eq!(ranges(&loading, None), std::slice::from_ref(&module));
            assert_eq!(ranges(&loading, Some(&[0x1000])), []);
            // Switching or later: the new code, in place or in the module, may run.
            for state in [State::Switching, State::Applied, State::Reverting] {
                let written = record(state, vec![entry(in_place.clone())]);
                assert!(written.may_have_written());
                let guarded = ranges(&written, None);
                assert!(guarded.contains(&module), "{guarded:?}");
                assert!(
                    (guarded.iter()).any(|(r, _)| r == &(0x9000..0x9004)),
                    "{guarded:?}"
                );
                assert_eq!(
                    (guarded.iter()).any(|(r, f)| r == &(0x1000..0x1020) && f.contains("in place")),
                    in_place.is_some(),
                    "{guarded:?}"
                );
            }
        }
    }
}
