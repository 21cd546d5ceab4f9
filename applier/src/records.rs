//! Reading the records of every package applied to a process.

use lpkg_kernel::{maps, memory, Pid};

use crate::quiesce::Guarded;
use crate::record::{RecordBody, State, HEADER_LEN, NAME_PREFIX};
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
}

impl LiveRecord {
    /// The patch code of this package that no thread may be in: when it is reverted (`None`:
    /// everything), or when the functions at `addresses` that it replaced are replaced again
    /// by a stacked package. Each replaced function's new code comes named by function; the
    /// whole module (new and carried functions, stubs) is added for a revert, or when a record
    /// of an older applier does not give a function's new size.
    pub fn guarded_code(&self, addresses: Option<&[u64]>) -> Vec<Guarded> {
        let body = &self.body;
        let package = format!("package {} {}", body.name, body.version);
        let mut whole = addresses.is_none();
        let mut guarded = Vec::new();
        for entry in body
            .entries
            .iter()
            .filter(|e| addresses.is_none_or(|a| a.contains(&e.address)))
        {
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

/// Every lpkg record mapped in `pid`, oldest package first.
pub fn read(pid: Pid) -> Result<Vec<LiveRecord>, Error> {
    let mut records = Vec::new();
    for entry in maps::read(pid)? {
        let Some(path) = entry.path.as_ref() else {
            continue;
        };
        let Some(name) = path.to_str().and_then(|p| p.strip_prefix("/memfd:")) else {
            continue;
        };
        if !name.starts_with(NAME_PREFIX) || entry.offset != 0 {
            continue;
        }
        let bad = |reason: String| Error::BadRecord {
            pid,
            address: entry.start,
            reason,
        };
        let header = memory::read(pid, entry.start, HEADER_LEN)?;
        let (state, len) = RecordBody::decode_header(&header).map_err(bad)?;
        if (HEADER_LEN + len) as u64 > entry.end - entry.start {
            return Err(bad(format!("body of {len} bytes runs past the mapping")));
        }
        let body = memory::read(pid, entry.start + HEADER_LEN as u64, len)?;
        let body = RecordBody::decode_body(&body).map_err(bad)?;
        records.push(LiveRecord {
            address: entry.start,
            len: entry.end - entry.start,
            state,
            body,
        });
    }
    records.sort_by_key(|r| r.body.sequence);
    Ok(records)
}
