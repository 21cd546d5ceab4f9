//! The manifest: what a package changes, in a form an auditor can read (TOML).
//!
//! This file is the contract between the builder (which fills it), the applier (which obeys it)
//! and auditors (who read it). Every field is specified in `spec/lpkg-format.md`.

use serde::{Deserialize, Serialize};

use crate::error::{one_line, Error};

/// The highest manifest format version this crate reads and writes. A manifest is version 4
/// exactly when its target names a linked-in unwinder (`target.unwinder`, the addition of
/// version 4); else 3 exactly when it has a `check` routine or its module carries the
/// shadow-variable runtime (data [`SHADOW_TABLE_SYMBOL`]), the additions of version 3; else 2
/// exactly when a function carries `call_sites` (the addition of version 2); else 1: older
/// readers refuse what they would misread, and the rest stays readable by them
/// ([`Manifest::needed_version`]).
pub const FORMAT_VERSION: u32 = 4;

/// Name of the payload holding the patch module (an ELF relocatable object).
pub const MODULE_PAYLOAD: &str = "module.o";
/// Name of the payload holding the symbol map (TOML, [`SymbolMap`]).
pub const SYMBOLS_PAYLOAD: &str = "symbols.toml";
/// Global symbol of `module.o` at the start of its `.eh_frame` (the patch code's CFI).
pub const EH_FRAME_SYMBOL: &str = "__lpkg_eh_frame";
/// Global symbol of `module.o` at the end of its `.eh_frame` records (before the terminator).
pub const EH_FRAME_END_SYMBOL: &str = "__lpkg_eh_frame_end";
/// Module symbol of the zeroed room (`EH_OBJECT_SIZE` bytes, 16-aligned, writable) with
/// which the applier registers the module's `.eh_frame` with the target's unwinder (libgcc's
/// `struct object`, at most 8 pointers since crtstuff allocates it statically).
pub const EH_OBJECT_SYMBOL: &str = "__lpkg_eh_object";
/// Size of the room at [`EH_OBJECT_SYMBOL`].
pub const EH_OBJECT_SIZE: u64 = 128;
/// Module symbol (a pointer, writable, global) of a module that carries the shadow-variable
/// runtime: the applier writes into it the address of the process's shadow area before any
/// routine runs (spec/shadow-variables.md).
pub const SHADOW_TABLE_SYMBOL: &str = "__lpkg_shadow_table";

/// The whole manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// 1, 2 when a function has `call_sites`, 3 with a `check` routine or shadow variables, 4
    /// when the target names a linked-in unwinder ([`Manifest::needed_version`]).
    pub format_version: u32,
    /// Who and what the package is.
    pub package: PackageInfo,
    /// The one object file (executable or shared library) this package patches.
    pub target: Target,
    /// Packages that must already be applied before this one (stacking).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Requirement>,
    /// Every replaced or new function.
    #[serde(default, rename = "function", skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<Function>,
    /// Every new data object carried in the patch module.
    #[serde(default, rename = "data", skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<Data>,
    /// Init routines (run after the switch) and exit routines (run on revert).
    #[serde(default, rename = "routine", skip_serializing_if = "Vec::is_empty")]
    pub routines: Vec<Routine>,
    /// A digest for every payload in the container.
    #[serde(rename = "payload")]
    pub payloads: Vec<Payload>,
}

/// Identity of the package.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackageInfo {
    /// Package name, e.g. `server-fix-cve-2026-1234`.
    pub name: String,
    /// Package version, free text (e.g. `1.0.2`).
    pub version: String,
    /// One or more sentences for the auditor; may be empty.
    #[serde(default)]
    pub description: String,
    /// `lpkg-builder <version>` of the tool that wrote the package.
    pub builder_version: String,
}

/// The object the package is bound to.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// File name (no directory) of the executable or shared library, e.g. `server` or `libfoo.so.1`.
    pub file_name: String,
    /// GNU build-id, lower-case hex.
    pub build_id: String,
    /// SHA-256 of the whole target file, lower-case hex.
    pub sha256: String,
    /// ELF machine, e.g. `x86_64`.
    pub machine: String,
    /// libgcc's unwinder linked into the target (`-static-libgcc`, a static executable), found
    /// by the builder in the target's symbol table or debug file: the applier registers the
    /// new code's CFI with this copy, which a stripped target does not show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unwinder: Option<LinkedUnwinder>,
}

/// Where libgcc's unwinder linked into the target has its frame registration functions.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkedUnwinder {
    /// Offset of `__register_frame_info` from the target's load base.
    pub register_frame_info: u64,
    /// Offset of `__deregister_frame_info` from the target's load base.
    pub deregister_frame_info: u64,
}

/// A package that must be applied first.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Name of the required package.
    pub name: String,
    /// Package id (SHA-256 of its manifest bytes, lower-case hex).
    pub id: String,
}

/// What happens to a function.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The function exists in the target; its entry is overwritten with a jump to the new code.
    Replace,
    /// The function exists only in the patch module.
    New,
}

/// One replaced or new function.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// Symbol name in the target (for `replace`) or in the new object (for `new`).
    pub name: String,
    /// Replace an existing function or add a new one.
    pub action: Action,
    /// `file.c:LINE` from DWARF, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why the builder includes it, e.g. `changed bytes`, `inlined callee changed: helper`.
    pub reason: String,
    /// Name of the function's symbol inside the patch module.
    pub module_symbol: String,
    /// Offset of the old function from the target's load base (`replace` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_offset: Option<u64>,
    /// Size in bytes of the old function (`replace` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    /// SHA-256 of the old function's bytes as read from the target file (`replace` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_sha256: Option<String>,
    /// Bytes from the old function's start that its new code may occupy when the applier
    /// writes it in place of the old instead of a jump to it: the old function and the
    /// alignment padding after it, up to the next symbol (`replace` only; absent when another
    /// symbol starts inside the function, which may then be entered other than at its start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_room: Option<u64>,
    /// Offsets in the target of the 4-byte displacement of every direct call and jump to the
    /// old function (`replace` only), given when the function is shorter than a `jmp rel32`
    /// and no padding follows it (`old_room` below 5): the applier points these at the new
    /// function instead of writing a jump at the entry. Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub call_sites: Vec<u64>,
    /// Size in bytes of the new function.
    pub new_size: u64,
}

/// A new data object carried in the patch module.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// Symbol name of the object in the patch module.
    pub name: String,
    /// Section of the patch module holding it (`.data.x`, `.bss.x`, `.rodata.x`).
    pub section: String,
    /// Size in bytes.
    pub size: u64,
}

/// When a routine runs.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoutineKind {
    /// Before the switch, every thread stopped; a non-zero return refuses the apply (nothing
    /// changes). Format version 3.
    Check,
    /// After the switch; a non-zero return rolls the patch back.
    Init,
    /// Before the original code is restored on revert.
    Exit,
}

/// A check, init or exit routine, marked in the source with `LPKG_CHECK(fn)`, `LPKG_INIT(fn)`
/// or `LPKG_EXIT(fn)`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Routine {
    /// Check, init or exit.
    pub kind: RoutineKind,
    /// Symbol name inside the patch module; the routine takes no argument and returns `int`.
    pub module_symbol: String,
}

/// Digest of one payload.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Payload name, e.g. `module.o`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// The symbol map payload: how each undefined symbol of the patch module is resolved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct SymbolMap {
    /// One binding per undefined symbol of the patch module.
    #[serde(default, rename = "symbol")]
    pub symbols: Vec<SymbolBinding>,
}

/// How one undefined symbol of the patch module is resolved at apply time.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SymbolBinding {
    /// Something that stays in the target: its address is the target's load base + `offset`.
    Target {
        /// Undefined symbol name in the patch module.
        name: String,
        /// Offset from the target's load base.
        offset: u64,
    },
    /// Something in another loaded object (libc...), found by `symbol` name in the process's
    /// dynamic symbol tables; `version` (e.g. `GLIBC_2.2.5`) when the reference was versioned.
    External {
        /// Undefined symbol name in the patch module.
        name: String,
        /// Dynamic symbol to look up in the process.
        symbol: String,
        /// Symbol version, when the reference was versioned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
}

impl SymbolBinding {
    /// The undefined symbol's name in the patch module.
    pub fn name(&self) -> &str {
        match self {
            SymbolBinding::Target { name, .. } | SymbolBinding::External { name, .. } => name,
        }
    }
}

impl Manifest {
    /// The canonical TOML encoding: the one [`crate::Package::new`] stores and signs.
    pub fn to_toml(&self) -> Result<String, Error> {
        toml::to_string(self).map_err(|e| Error::Manifest {
            reason: one_line(e),
        })
    }

    /// Parses a manifest; unknown fields are errors. Does not [`Manifest::validate`]. A
    /// manifest of a later version than this crate reads is refused as such, not for the
    /// keys that version added.
    pub fn from_toml(text: &str) -> Result<Manifest, Error> {
        toml::from_str(text).map_err(|e| {
            #[derive(Deserialize)]
            struct Version {
                format_version: u32,
            }
            match toml::from_str::<Version>(text) {
                Ok(Version { format_version }) if format_version > FORMAT_VERSION => {
                    Error::UnsupportedVersion {
                        version: format_version,
                    }
                }
                _ => Error::Manifest {
                    reason: one_line(e.message()),
                },
            }
        })
    }

    /// The format version this manifest is written with: 4 when its target names a linked-in
    /// unwinder, else 3 when it has a `check` routine or the shadow-variable runtime
    /// ([`SHADOW_TABLE_SYMBOL`] among its data), else 2 when a function carries `call_sites`,
    /// else 1.
    pub fn needed_version(&self) -> u32 {
        let check = self.routines.iter().any(|r| r.kind == RoutineKind::Check);
        let shadows = self.data.iter().any(|d| d.name == SHADOW_TABLE_SYMBOL);
        if self.target.unwinder.is_some() {
            4
        } else if check || shadows {
            3
        } else if self.functions.iter().any(|f| !f.call_sites.is_empty()) {
            2
        } else {
            1
        }
    }

    /// Checks what the schema alone cannot: digests and ids are lower-case hex of the right
    /// length, and each function carries exactly the fields its action calls for. Readers and
    /// [`crate::Package::new`] call it, so a malformed manifest never reaches the applier.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |what: String, reason: &str| Error::Manifest {
            reason: format!("{what}: {reason}"),
        };
        let digest = |what: String, value: &str| {
            if is_hex(value) && value.len() == 64 {
                Ok(())
            } else {
                Err(invalid(what, "not 64 lower-case hex digits"))
            }
        };
        if !(1..=FORMAT_VERSION).contains(&self.format_version) {
            return Err(Error::UnsupportedVersion {
                version: self.format_version,
            });
        }
        let build_id = &self.target.build_id;
        if !(is_hex(build_id)
            && build_id.len().is_multiple_of(2)
            && (2..=128).contains(&build_id.len()))
        {
            return Err(invalid(
                "target.build_id".into(),
                "not 1 to 64 bytes of lower-case hex",
            ));
        }
        digest("target.sha256".into(), &self.target.sha256)?;
        for (what, text) in self.texts() {
            if let Some(c) = text.chars().find(|&c| is_terminal_control(c)) {
                return Err(invalid(
                    what,
                    &format!(
                        "contains the control character U+{:04X}: printed, it could rewrite what an auditor reads",
                        c as u32
                    ),
                ));
            }
        }
        for r in &self.requires {
            digest(format!("requires {}: id", r.name), &r.id)?;
        }
        for f in &self.functions {
            let what = format!("function {}", f.name);
            if f.name.is_empty() || f.module_symbol.is_empty() {
                return Err(invalid(what, "empty name or module_symbol"));
            }
            let old = [
                f.old_offset.is_some(),
                f.old_size.is_some(),
                f.old_sha256.is_some(),
            ];
            match f.action {
                Action::Replace if old != [true; 3] => {
                    return Err(invalid(
                        what,
                        "replace needs old_offset, old_size and old_sha256",
                    ))
                }
                Action::New if old != [false; 3] => {
                    return Err(invalid(
                        what,
                        "new must not have old_offset, old_size or old_sha256",
                    ))
                }
                _ => {}
            }
            match (f.action, f.old_room) {
                (Action::New, Some(_)) => return Err(invalid(what, "new must not have old_room")),
                (_, Some(room)) if room < f.old_size.unwrap_or(0) => {
                    return Err(invalid(what, "old_room is smaller than old_size"))
                }
                _ => {}
            }
            if f.action == Action::New && !f.call_sites.is_empty() {
                return Err(invalid(what, "new must not have call_sites"));
            }
            if let Some(old_sha256) = &f.old_sha256 {
                digest(format!("{what}: old_sha256"), old_sha256)?;
            }
        }
        for p in &self.payloads {
            digest(format!("payload {}: sha256", p.name), &p.sha256)?;
        }
        if self.format_version != self.needed_version() {
            return Err(invalid(
                "format_version".into(),
                "must be 4 exactly with target.unwinder, else 3 exactly with a check routine or shadow variables, else 2 exactly when a function has call_sites, else 1",
            ));
        }
        Ok(())
    }
}

impl Manifest {
    /// Every free-text string of the manifest, with what it is, for [`Manifest::validate`].
    fn texts(&self) -> Vec<(String, &str)> {
        let p = &self.package;
        let mut texts = vec![
            ("package.name".to_owned(), p.name.as_str()),
            ("package.version".to_owned(), p.version.as_str()),
            ("package.description".to_owned(), p.description.as_str()),
            (
                "package.builder_version".to_owned(),
                p.builder_version.as_str(),
            ),
            (
                "target.file_name".to_owned(),
                self.target.file_name.as_str(),
            ),
            ("target.machine".to_owned(), self.target.machine.as_str()),
        ];
        for r in &self.requires {
            texts.push(("requires: name".to_owned(), r.name.as_str()));
        }
        for f in &self.functions {
            let what = |key: &str| format!("function {}: {key}", f.name.escape_default());
            texts.push((what("name"), f.name.as_str()));
            texts.push((what("module_symbol"), f.module_symbol.as_str()));
            texts.push((what("reason"), f.reason.as_str()));
            if let Some(source) = &f.source {
                texts.push((what("source"), source.as_str()));
            }
        }
        for d in &self.data {
            texts.push(("data: name".to_owned(), d.name.as_str()));
            texts.push(("data: section".to_owned(), d.section.as_str()));
        }
        for r in &self.routines {
            texts.push((
                "routine: module_symbol".to_owned(),
                r.module_symbol.as_str(),
            ));
        }
        texts
    }
}

/// Characters that move a terminal's cursor, change its state or reorder the text shown
/// (C0 and C1 controls, DEL, and the bidirectional overrides and isolates).
pub fn is_terminal_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn is_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl SymbolMap {
    /// The TOML encoding stored as the `symbols.toml` payload.
    pub fn to_toml(&self) -> Result<String, Error> {
        toml::to_string(self).map_err(|e| Error::SymbolMap {
            reason: one_line(e),
        })
    }

    /// Parses a symbol map; unknown fields are errors.
    pub fn from_toml(text: &str) -> Result<SymbolMap, Error> {
        toml::from_str(text).map_err(|e| Error::SymbolMap {
            reason: one_line(e.message()),
        })
    }
}
