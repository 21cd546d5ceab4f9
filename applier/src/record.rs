//! The record of an applied package, kept inside the target process itself.
//!
//! Each package applied to a process has one record: a shared mapping of a memfd named
//! `lpkg:<first 16 hex digits of the package id>`, so it shows in `/proc/PID/maps` as
//! `/memfd:lpkg:… (deleted)` on any kernel and dies with the process. Layout (spec/apply-protocol.md):
//!
//! ```text
//! 0   magic   b"LPKGREC1"
//! 8   state   u32 little-endian (State)
//! 12  length  u32 little-endian: bytes of body that follow
//! 16  body    TOML (RecordBody), written once, before any jump is written
//! ```
//! Only the state word changes after the body is written; a 4-byte aligned store is atomic,
//! so a reader never sees a torn state.

use crate::reloc::Machine;
use serde::{Deserialize, Serialize};

/// Magic at the start of every record.
pub const MAGIC: &[u8; 8] = b"LPKGREC1";
/// Offset of the state word.
pub const STATE_OFFSET: u64 = 8;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Prefix of the memfd name of a record.
pub const NAME_PREFIX: &str = "lpkg:";
/// Prefix of the memfd name of a patch module (followed by the same 16 hex digits as its
/// record's): the module is mapped before its record exists, and this name is how one left
/// without a record is found.
pub const MODULE_NAME_PREFIX: &str = "lpkg-module:";
/// Largest body accepted when reading a record.
pub const MAX_BODY: usize = 16 << 20;

/// Where an operation on a package stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The module is being loaded; no entry has been touched.
    Loading = 1,
    /// Jumps are being written: some entries may be patched, the originals are in the record.
    Switching = 2,
    /// Every entry jumps to the patch.
    Applied = 3,
    /// Original bytes are being restored.
    Reverting = 4,
}

impl State {
    /// Decodes a state word.
    pub fn from_word(word: u32) -> Option<State> {
        Some(match word {
            1 => State::Loading,
            2 => State::Switching,
            3 => State::Applied,
            4 => State::Reverting,
            _ => return None,
        })
    }

    /// The word stored in the record.
    pub fn word(self) -> u32 {
        self as u32
    }

    /// How `lpkg list` names it.
    pub fn name(self) -> &'static str {
        match self {
            State::Loading => "interrupted (loading)",
            State::Switching => "interrupted (switching)",
            State::Applied => "applied",
            State::Reverting => "interrupted (reverting)",
        }
    }

    /// Whether an operation died half-way through.
    pub fn is_interrupted(self) -> bool {
        self != State::Applied
    }
}

/// Everything needed to list and revert a package, without the package file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// Package id (hex SHA-256 of its manifest).
    pub id: String,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Key ids of the trusted signatures that admitted it.
    pub signers: Vec<String>,
    /// When the apply started, seconds since the Unix epoch.
    pub applied_at: u64,
    /// Order among packages applied to this process (1 = first).
    pub sequence: u64,
    /// Path of the patched object as mapped in the process.
    pub target_path: String,
    /// Start and length of the patch module's mapping.
    pub module_address: u64,
    /// Length of the patch module's mapping.
    pub module_len: u64,
    /// Address of the patch code's CFI (`.eh_frame`) inside the module; 0 when the module has
    /// none (built by an older builder): threads inside its code then cannot be unwound.
    #[serde(default)]
    pub eh_frame_address: u64,
    /// Length of that `.eh_frame`, in bytes.
    #[serde(default)]
    pub eh_frame_len: u64,
    /// The target's unwinder the module's `.eh_frame` is registered with (written before the
    /// registration: whether it happened shows in the module, see `registration`); absent
    /// when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unwind_registration: Option<Registration>,
    /// The same with LLVM's libunwind, when the process has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llvm_registration: Option<LlvmRegistration>,
    /// Exit routines to run on revert, as addresses in the module.
    #[serde(default)]
    pub exit_routines: Vec<u64>,
    /// Whether the module uses the process's shadow area (carries the shadow-variable
    /// runtime): revert unmaps the area once no record with this flag is left. Absent when
    /// false, so records of packages without shadows stay what older readers read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadows: bool,
    /// Ids of the packages this one requires (its manifest's `requires`): none of them is
    /// reverted while this one is applied. Absent when empty, so records of packages that
    /// require none stay what older readers read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Every entry overwritten with a jump.
    #[serde(default, rename = "entry")]
    pub entries: Vec<Entry>,
}

/// How the module's CFI is registered with the target's own unwinder (libgcc's).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Path of the unwinder library, for messages.
    pub library: String,
    /// Its `__deregister_frame_info`.
    pub deregister: u64,
    /// The module's room for the unwinder's `struct object` (`__lpkg_eh_object`): zero until
    /// the unwinder registered the frames.
    pub object: u64,
}

/// How the module's CFI is registered with LLVM's libunwind.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LlvmRegistration {
    /// Path of the unwinder library, for messages.
    pub library: String,
    /// Its `__unw_remove_dynamic_fde`, called for each FDE of the module.
    pub remove: u64,
}

impl RecordBody {
    /// The module's registrations with the target's unwinders.
    pub fn registrations(&self) -> crate::registration::Registrations<'_> {
        crate::registration::Registrations {
            libgcc: self.unwind_registration.as_ref(),
            llvm: self.llvm_registration.as_ref(),
            eh_frame: self.eh_frame_address,
            eh_frame_len: self.eh_frame_len,
        }
    }
}

/// A range of code no thread may be executing at switch time, and what to call it.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// Addresses of the code.
    pub range: std::ops::Range<u64>,
    /// The function it belongs to, for messages.
    pub function: String,
}

/// One overwritten function entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The function's name in the target.
    pub function: String,
    /// Address of its entry.
    pub address: u64,
    /// Size of the old function (the range no thread may be in at switch time).
    pub size: u64,
    /// The bytes that were there before the jump or the new code was written (lower-case hex).
    pub original: String,
    /// Where the jump leads: the new function in the patch module.
    pub new_address: u64,
    /// Size of the new function (the range no thread may be in when the package is reverted);
    /// 0 in records of older appliers.
    #[serde(default)]
    pub new_size: u64,
    /// The new code written at `address` in place of the old, relinked to run there (as long
    /// as `original`; lower-case hex in the record); `None` when the entry holds a jump to
    /// `new_address`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_hex"
    )]
    pub in_place: Option<Vec<u8>>,
    /// Addresses of the 4-byte displacement of each direct call or jump to `address` that
    /// now leads to `new_address` instead: a function shorter than a jump with no padding
    /// after it, whose entry is left as it was (`original` is then empty). Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub call_sites: Vec<u64>,
}

/// One run of bytes an entry writes: where, what, and what was there before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Where.
    pub address: u64,
    /// The bytes written.
    pub ours: Vec<u8>,
    /// The bytes they replace.
    pub original: Vec<u8>,
}

/// `Option<Vec<u8>>` as a hex string, absent (or empty, as older records may have it) for
/// `None`.
mod optional_hex {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_str(&super::hex(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        super::unhex(&text)
            .map(Some)
            .ok_or_else(|| D::Error::custom("in_place is not hex"))
    }
}

impl Entry {
    /// The bytes that were at `address` before the package (`None`: not hex in the record).
    pub fn original_bytes(&self) -> Option<Vec<u8>> {
        unhex(&self.original)
    }

    /// The bytes at `address` that this package wrote: the new code, or the jump.
    pub fn written(&self) -> Option<Vec<u8>> {
        match &self.in_place {
            // Either machine's jump (see `call_displacement`).
            None => (Machine::X86_64.jump(self.address, self.new_address))
                .or_else(|| Machine::I386.jump(self.address, self.new_address))
                .map(|j| j.to_vec()),
            Some(code) => Some(code.clone()),
        }
    }

    /// Every run of bytes this entry writes: the jump or the new code at `address`, or the
    /// displacement of each call site. `None` when the record's bytes are not what this
    /// entry could have written (bad hex, lengths that differ, a call out of reach).
    pub fn writes(&self) -> Option<Vec<Write>> {
        if self.call_sites.is_empty() {
            let (ours, original) = (self.written()?, unhex(&self.original)?);
            return (ours.len() == original.len()).then(|| {
                vec![Write {
                    address: self.address,
                    ours,
                    original,
                }]
            });
        }
        if !self.original.is_empty() || self.in_place.is_some() {
            return None;
        }
        self.call_sites
            .iter()
            .map(|&field| {
                Some(Write {
                    address: field,
                    ours: call_displacement(field, self.new_address)?.to_vec(),
                    original: call_displacement(field, self.address)?.to_vec(),
                })
            })
            .collect()
    }

    /// How the new code is reached, for people: `in place`, `jump`, `jump in padding` (a
    /// function shorter than the jump, which runs into the padding after it) or `call sites
    /// rewritten: N`.
    pub fn how(&self) -> String {
        if self.in_place.is_some() {
            "in place".into()
        } else if !self.call_sites.is_empty() {
            format!("call sites rewritten: {}", self.call_sites.len())
        } else if self.size < crate::reloc::JUMP_LEN as u64 {
            "jump in padding".into()
        } else {
            "jump".into()
        }
    }

    /// The range no thread may be in when this entry is switched: the old function, and the
    /// bytes after it that its jump or new code in place overwrites (padding).
    pub fn guarded_range(&self) -> std::ops::Range<u64> {
        let written = (self.original.len() / 2) as u64;
        let len = (self.in_place.as_ref().map_or(0, Vec::len) as u64)
            .max(written)
            .max(self.size);
        self.address..self.address.saturating_add(len)
    }
}

/// The 4-byte displacement at `field`, the end of a direct call or jump (`jmp rel32` and
/// `call rel32` on both machines), that makes it lead to `to`; `None` out of reach.
///
/// A record does not name its machine, so this is what either could have written: within
/// ±2 GiB, or, between addresses below 4 GiB, any distance, as an i386 displacement wraps
/// around its address space. An apply checks the reach with its process's machine first
/// ([`crate::reloc::Machine::reaches`]): an x86_64 one never writes the second kind.
pub fn call_displacement(field: u64, to: u64) -> Option<[u8; 4]> {
    let end = field.wrapping_add(4);
    let reached = [Machine::X86_64, Machine::I386]
        .iter()
        .any(|m| m.reaches(end, to));
    reached.then(|| (to.wrapping_sub(end) as u32).to_le_bytes())
}

/// Start and length of the `.eh_frame` of a linked patch module, from its global symbols
/// (`(0, 0)` for a module without one).
pub fn eh_frame_of(symbols: &std::collections::BTreeMap<String, u64>) -> (u64, u64) {
    let start = symbols.get(lpkg_format::EH_FRAME_SYMBOL).copied();
    let end = symbols.get(lpkg_format::EH_FRAME_END_SYMBOL).copied();
    match (start, end) {
        (Some(start), Some(end)) if end > start => (start, end - start),
        _ => (0, 0),
    }
}

impl RecordBody {
    /// Header and body, ready to be written at the start of the record mapping.
    pub fn encode(&self, state: State) -> Vec<u8> {
        let body = toml::to_string(self).expect("a record body always serialises");
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&state.word().to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }

    /// Parses a header; returns the state and the body length.
    pub fn decode_header(header: &[u8]) -> Result<(State, usize), String> {
        if header.len() < HEADER_LEN || &header[..8] != MAGIC {
            return Err("no record magic".into());
        }
        let word = u32::from_le_bytes(header[8..12].try_into().unwrap());
        let state = State::from_word(word).ok_or_else(|| format!("unknown state {word}"))?;
        let len = u32::from_le_bytes(header[12..16].try_into().unwrap()) as usize;
        if len > MAX_BODY {
            return Err(format!("body length {len} is over the limit"));
        }
        Ok((state, len))
    }

    /// Parses a body.
    pub fn decode_body(body: &[u8]) -> Result<RecordBody, String> {
        let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
        // Not the parser's own rendering, which quotes the line: the process wrote it, and it
        // may be megabytes long.
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let at = e.span().map(|s| format!(" at byte {}", s.start));
            let message: String = e.message().chars().take(256).collect();
            format!("body{}: {message}", at.unwrap_or_default())
        })
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Records of new code in place hold hundreds of kilobytes of it: no format! per byte.
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    text
}

/// Bytes from lower-case or upper-case hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let body = RecordBody {
            id: "ab".repeat(32),
            name: "fix".into(),
            version: "1".into(),
            signers: vec!["0011223344556677".into()],
            applied_at: 1,
            sequence: 1,
            target_path: "/srv/a b (deleted)".into(),
            module_address: 0x5555_0000_0000,
            module_len: 8192,
            eh_frame_address: 0x5555_0000_1000,
            eh_frame_len: 0x68,
            unwind_registration: Some(Registration {
                library: "/lib/x86_64-linux-gnu/libgcc_s.so.1".into(),
                deregister: 0x7f00_0000_1000,
                object: 0x5555_0000_1800,
            }),
            llvm_registration: Some(LlvmRegistration {
                library: "/lib/x86_64-linux-gnu/libunwind.so.1".into(),
                remove: 0x7f00_0000_2000,
            }),
            exit_routines: vec![],
            shadows: true,
            requires: vec!["cd".repeat(32)],
            entries: vec![Entry {
                function: "f".into(),
                address: 0x1000,
                size: 20,
                original: hex(&[0xf3, 0x0f, 0x1e, 0xfa, 0x55]),
                new_address: 0x2000,
                new_size: 30,
                in_place: Some(vec![0x31, 0xc0, 0xc3, 0x90, 0xc3]),
                call_sites: vec![],
            }],
        };
        let bytes = body.encode(State::Switching);
        let (state, len) = RecordBody::decode_header(&bytes).unwrap();
        assert_eq!(state, State::Switching);
        assert_eq!(
            RecordBody::decode_body(&bytes[HEADER_LEN..HEADER_LEN + len]).unwrap(),
            body
        );
        assert!(RecordBody::decode_header(b"LPKGREC1\x09\0\0\0\0\0\0\0").is_err());
        assert_eq!(unhex("f30f").unwrap(), vec![0xf3, 0x0f]);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all)).unwrap(), all);
        assert_eq!(hex(&[0x0a, 0xf0]), "0af0");
        assert!(unhex("f3x").is_none());
    }

    #[test]
    fn entries_write_their_jump_or_their_call_sites() {
        let mut entry = Entry {
            function: "one".into(),
            address: 0x1000,
            size: 1,
            original: hex(&[0xc3, 0x90, 0x90, 0x90, 0x90]),
            new_address: 0x9000,
            new_size: 10,
            in_place: None,
            call_sites: vec![],
        };
        // A 1-byte function whose jump runs into its padding: the stack check covers all 5.
        assert_eq!(entry.how(), "jump in padding");
        assert_eq!(entry.guarded_range(), 0x1000..0x1005);
        let writes = entry.writes().unwrap();
        assert_eq!(writes.len(), 1);
        assert_eq!(
            writes[0].ours,
            Machine::X86_64.jump(0x1000, 0x9000).unwrap()
        );
        // No padding: its calls at 0x2001 and 0x0f00 (their displacements) lead to 0x9000.
        entry.original = String::new();
        entry.call_sites = vec![0x2001, 0x0f00];
        assert_eq!(entry.how(), "call sites rewritten: 2");
        assert_eq!(entry.guarded_range(), 0x1000..0x1001);
        let writes = entry.writes().unwrap();
        assert_eq!(writes[0].address, 0x2001);
        assert_eq!(writes[0].ours, (0x9000i32 - 0x2005).to_le_bytes());
        assert_eq!(writes[0].original, (0x1000i32 - 0x2005).to_le_bytes());
        assert_eq!(writes[1].original, (0x1000i32 - 0x0f04).to_le_bytes());
        let body = RecordBody::decode_body(
            toml::to_string(&RecordBody {
                entries: vec![entry.clone()],
                ..RecordBody::decode_body(b"id='a'\nname='n'\nversion='1'\nsigners=[]\napplied_at=1\nsequence=1\ntarget_path='t'\nmodule_address=0\nmodule_len=0").unwrap()
            })
            .unwrap()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(body.entries, [entry.clone()]);
        // A record saying both (bytes at the entry and call sites) is not one we wrote.
        entry.original = "c3".into();
        assert!(entry.writes().is_none());
        assert_eq!(call_displacement(0, 1 << 40), None);
    }

    #[test]
    fn jumps_and_calls_past_2_gib_are_an_i386_process_s_only() {
        // 3 GiB apart, below 4 GiB: an i386 displacement wraps; x86_64 cannot reach it.
        let (from, to) = (0x0804_8000u64, 0xc804_8000u64);
        assert!(Machine::I386.reaches(from + 5, to));
        assert!(!Machine::X86_64.reaches(from + 5, to));
        let rel = to.wrapping_sub(from + 5) as u32;
        assert_eq!(call_displacement(from + 1, to), Some(rel.to_le_bytes()));
        let entry = Entry {
            function: "f".into(),
            address: from,
            size: 16,
            original: "5589e583ec".into(),
            new_address: to,
            new_size: 16,
            in_place: None,
            call_sites: vec![],
        };
        let mut jump = vec![0xe9];
        jump.extend_from_slice(&rel.to_le_bytes());
        assert_eq!(entry.written(), Some(jump));
        // Above 4 GiB only ±2 GiB is a displacement.
        assert_eq!(call_displacement(1 << 33, (1 << 33) + (3 << 30)), None);
        assert!(!Machine::I386.reaches(1 << 33, 1 << 33));
    }
}
