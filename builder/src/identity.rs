//! What a relocation designates, described independently of addresses and symbol numbering,
//! so that old and new objects can be compared.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::arch::{Arch, RelocClass};
use crate::dwarf::Facts;
use crate::objfile::{Obj, Rel, SymKind};
use crate::target::hex;

/// What a relocation refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// A global symbol not defined in this object (another file of the target, or a library);
    /// `off` from the symbol.
    Undefined { name: String, off: i64 },
    /// A function defined in this object; `off` from its first byte.
    Func { name: String, off: i64 },
    /// A section carried by content (string literals, jump tables, constants, CSWTCH, local
    /// read-only objects); `off` from the section start.
    Content { sec: usize, off: i64 },
    /// A named data object of this object (stays in the target unless new).
    Data { sym: usize, off: i64 },
}

/// The relocation's bias (distance to the end of the instruction) in a code section.
pub fn bias(arch: Arch, bounds: &[(u64, u64)], rel: &Rel) -> i64 {
    match arch.reloc_class(rel.r_type) {
        Some(RelocClass::PcRelative) => crate::arch::decode::pc_relative_bias(bounds, rel.offset),
        _ => 0,
    }
}

/// Sections never treated as code or data by the differ.
pub fn ignored_section(name: &str) -> bool {
    name.starts_with(".lpkg.")
        || name.starts_with(".debug")
        || name.starts_with(".note")
        || name.starts_with(".comment")
        || name.starts_with(".eh_frame")
        || name == ".group"
}

/// Object analysis shared by comparison and module writing.
#[derive(Debug)]
pub struct Analysis {
    /// Correlation key of every named data symbol.
    pub data_keys: BTreeMap<usize, String>,
    /// Sections carried by content.
    pub content: BTreeSet<usize>,
    /// Function name -> symbol index.
    pub functions: BTreeMap<String, usize>,
}

/// `name.N` -> `name`.
pub fn strip_number(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

impl Analysis {
    pub fn new(obj: &Obj, facts: &Facts) -> Analysis {
        // Sorted first, then built in one go rather than name by name. The first symbol of a
        // name wins.
        let mut named: Vec<(&str, usize)> = obj
            .symbols
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == SymKind::Func && s.section.is_some())
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        named.sort_unstable();
        named.dedup_by(|later, first| later.0 == first.0);
        let functions: BTreeMap<String, usize> = named
            .into_iter()
            .map(|(name, i)| (name.to_string(), i))
            .collect();
        let mut content = BTreeSet::new();
        for (i, sec) in obj.sections.iter().enumerate() {
            if !sec.alloc() || sec.exec() || sec.tls() || ignored_section(&sec.name) {
                continue;
            }
            let named = obj.named_in(i);
            let read_only = !sec.write() || sec.name.starts_with(".data.rel.ro");
            if named.is_empty() || (read_only && named.iter().all(|&s| obj.symbols[s].local)) {
                content.insert(i);
            }
        }
        // Data keys: globals by name, statics by their DWARF scope, else by name.
        let mut data_keys = BTreeMap::new();
        let mut base_count: BTreeMap<String, usize> = BTreeMap::new();
        for s in &obj.symbols {
            if s.local && matches!(s.kind, SymKind::Object | SymKind::Tls) {
                *base_count
                    .entry(strip_number(&s.name).to_string())
                    .or_default() += 1;
            }
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, s) in obj.symbols.iter().enumerate() {
            let Some(sec) = s.section else { continue };
            if !matches!(s.kind, SymKind::Object | SymKind::Tls) || content.contains(&sec) {
                continue;
            }
            if obj
                .sections
                .get(sec)
                .is_some_and(|x| ignored_section(&x.name))
            {
                continue;
            }
            let key = if !s.local {
                format!("g:{}", s.name)
            } else if let Some(k) = facts.statics.get(&(sec, s.value)) {
                format!("s:{k}")
            } else if base_count.get(strip_number(&s.name)) == Some(&1) {
                format!("l:{}", strip_number(&s.name))
            } else {
                format!("l:{}", s.name)
            };
            let n = seen.entry(key.clone()).or_default();
            let key = if *n == 0 {
                key.clone()
            } else {
                format!("{key}#{n}")
            };
            *n += 1;
            data_keys.insert(i, key);
        }
        Analysis {
            data_keys,
            content,
            functions,
        }
    }

    /// What `rel` designates; `code` holds the instruction bounds when it is in a code section.
    /// `off` values include the bias, i.e. they are real offsets into the referenced thing.
    pub fn resolve(&self, obj: &Obj, rel: &Rel, code: Option<&[(u64, u64)]>) -> Ref {
        let s = &obj.symbols[rel.sym];
        let b = code.map_or(0, |c| bias(obj.arch, c, rel));
        let Some(sec) = s.section else {
            return Ref::Undefined {
                name: s.name.clone(),
                off: rel.addend.wrapping_add(b),
            };
        };
        // Wrapping: a damaged object may hold any addend; the sum only has to compare equal.
        let off = (s.value as i64).wrapping_add(rel.addend).wrapping_add(b);
        let section = &obj.sections[sec];
        if section.exec() {
            let f = obj.covering_symbol(sec, off.max(0) as u64).or_else(|| {
                obj.named_in(sec)
                    .into_iter()
                    .find(|&i| obj.symbols[i].kind == SymKind::Func)
            });
            if let Some(f) = f {
                let f = &obj.symbols[f];
                return Ref::Func {
                    name: f.name.clone(),
                    off: off.wrapping_sub(f.value as i64),
                };
            }
            return Ref::Content { sec, off };
        }
        if self.content.contains(&sec) {
            return Ref::Content { sec, off };
        }
        let d = obj.covering_symbol(sec, off.max(0) as u64).or_else(|| {
            // One past the end of an object, or an odd offset: the section's only object.
            let named = obj.named_in(sec);
            (named.len() == 1).then(|| named[0])
        });
        match d {
            Some(d) => Ref::Data {
                sym: d,
                off: off.wrapping_sub(obj.symbols[d].value as i64),
            },
            None => Ref::Content { sec, off },
        }
    }

    /// Address-free description of a reference, comparable between old and new objects.
    pub fn describe(&self, obj: &Obj, r: &Ref, depth: u32) -> String {
        match r {
            // A global is the same thing whether this object defines it or not (functions move
            // between files).
            Ref::Undefined { name, off } => format!("g:{name}{off:+}"),
            Ref::Func { name, off } => {
                let global = self
                    .functions
                    .get(name)
                    .is_some_and(|&i| !obj.symbols[i].local);
                if global {
                    format!("g:{name}{off:+}")
                } else {
                    format!("fn:{name}{off:+}")
                }
            }
            Ref::Data { sym, off } => {
                let key = self
                    .data_keys
                    .get(sym)
                    .cloned()
                    .unwrap_or_else(|| obj.symbols[*sym].name.clone());
                format!("{key}{off:+}")
            }
            Ref::Content { sec, off } => {
                let section = &obj.sections[*sec];
                let o = (*off).max(0) as usize;
                if section.strings() && o <= section.data.len() {
                    let start = section.data[..o]
                        .iter()
                        .rposition(|&b| b == 0)
                        .map_or(0, |p| p + 1);
                    let end = section.data[o..]
                        .iter()
                        .position(|&b| b == 0)
                        .map_or(section.data.len(), |p| o + p);
                    let text = String::from_utf8_lossy(&section.data[start..end]);
                    format!("str:{text:?}+{}", o - start)
                } else if section.merge() && section.entsize > 0 && o < section.data.len() {
                    let e = section.entsize as usize;
                    let start = o - o % e;
                    let end = (start + e).min(section.data.len());
                    format!("const:{}+{}", hex(&section.data[start..end]), o % e)
                } else {
                    format!("sec:{}{off:+}", self.section_digest(obj, *sec, depth))
                }
            }
        }
    }

    /// Digest of a section's bytes and relocation targets.
    pub fn section_digest(&self, obj: &Obj, sec: usize, depth: u32) -> String {
        let section = &obj.sections[sec];
        let mut h = Sha256::new();
        h.update(section.size.to_le_bytes());
        h.update(&section.data);
        if depth < 4 {
            for rel in &section.relocs {
                let r = self.resolve(obj, rel, None);
                h.update(format!(
                    "{}:{}:{};",
                    rel.offset,
                    rel.r_type,
                    self.describe(obj, &r, depth + 1)
                ));
            }
        }
        hex(&h.finalize()[..16])
    }

    /// Comparable form of the range `[start, start+size)` of a section: bytes and
    /// relocations.
    pub fn form(&self, obj: &Obj, sec: usize, start: u64, size: u64) -> (Vec<u8>, Vec<String>) {
        let section = &obj.sections[sec];
        let code = section.exec().then_some(&section.instructions[..]);
        let bytes = if section.nobits() {
            vec![0; size as usize]
        } else {
            let end = ((start + size) as usize).min(section.data.len());
            section.data[(start as usize).min(end)..end].to_vec()
        };
        let relocs = section
            .relocs
            .iter()
            .filter(|r| r.offset >= start && r.offset < start + size)
            .map(|rel| {
                let r = self.resolve(obj, rel, code);
                format!(
                    "{:#x} {} {}",
                    rel.offset - start,
                    obj.arch.reloc_name(rel.r_type),
                    self.describe(obj, &r, 0)
                )
            })
            .collect();
        (bytes, relocs)
    }
}
