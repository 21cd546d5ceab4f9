//! Reading the records of every package applied to a process.

use lpkg_kernel::{maps, memory, Pid};

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
