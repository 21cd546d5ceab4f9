//! Old and new instructions of every function in a package, side by side, for auditors
//! (`lpkg inspect --disasm`).

use std::collections::BTreeMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
use sha2::{Digest, Sha256};

use lpkg_format::Manifest;

use crate::arch::Arch;
use crate::error::Error;
use crate::target::{hex, TargetFile};

/// The listing of one function.
#[derive(Debug, Clone)]
pub struct FunctionListing {
    /// The function's name.
    pub name: String,
    /// Old code from the target file, when a target was given and matches the manifest.
    pub old: Option<Vec<String>>,
    /// Why the old code is not shown.
    pub old_missing: Option<String>,
    /// New code from the patch module, with its relocations named.
    pub new: Vec<String>,
}

/// Disassembles every function of a package. `target` is the file the package was built for
/// (optional: without it only the new code is shown).
pub fn listings(
    manifest: &Manifest,
    module: &[u8],
    target: Option<&Path>,
) -> Result<Vec<FunctionListing>, Error> {
    let bad = |e: object::Error| Error::BadInput {
        path: "module.o".into(),
        reason: format!("patch module: {e}"),
    };
    let file = object::File::parse(module).map_err(bad)?;
    let arch = Arch::of_object(file.architecture()).ok_or_else(|| Error::BadInput {
        path: "module.o".into(),
        reason: format!(
            "patch module: for {:?}, not x86_64 or i386",
            file.architecture()
        ),
    })?;
    let target = target.map(|t| TargetFile::read(t, None)).transpose()?;
    let mut out = Vec::new();
    for function in &manifest.functions {
        let symbol = file.symbol_by_name(&function.module_symbol);
        let new = match symbol.and_then(|s| s.section_index().map(|i| (s, i))) {
            Some((symbol, index)) => {
                let section = file.section_by_index(index).map_err(bad)?;
                let data = section.data().map_err(bad)?;
                let start = symbol.address() as usize;
                let end = (start + function.new_size as usize).min(data.len());
                let relocations: BTreeMap<u64, String> = section
                    .relocations()
                    .map(|(offset, r)| {
                        let target = match r.target() {
                            RelocationTarget::Symbol(i) => symbol_name(&file, i),
                            _ => String::new(),
                        };
                        let kind = match r.flags() {
                            object::RelocationFlags::Elf { r_type } => arch.reloc_name(r_type),
                            other => format!("{other:?}"),
                        };
                        let addend = match r.flags() {
                            object::RelocationFlags::Elf { r_type } if r.has_implicit_addend() => {
                                implicit_addend(arch, r_type, data, offset)
                            }
                            _ => r.addend(),
                        };
                        (offset, format!("{kind} {target}{addend:+}"))
                    })
                    .collect();
                arch.disassemble(data.get(start..end).unwrap_or(&[]), start as u64)
                    .into_iter()
                    .map(|line| {
                        let end = line.address + line.bytes.len() as u64;
                        let notes: Vec<&str> = relocations
                            .range(line.address..end)
                            .map(|(_, n)| n.as_str())
                            .collect();
                        let mut text = format!("{:6x}  {}", line.address - start as u64, line.text);
                        if !notes.is_empty() {
                            text = format!("{text:<48} ; {}", notes.join(", "));
                        }
                        text
                    })
                    .collect()
            }
            None => vec![format!(
                "(module symbol {} not found)",
                function.module_symbol
            )],
        };
        let (mut old, mut old_missing) = (None, None);
        match (&target, function.old_offset, function.old_size) {
            (_, None, _) | (_, _, None) => old_missing = Some("new function".to_owned()),
            (None, _, _) => old_missing = Some("give --target to see the old code".to_owned()),
            (Some(t), Some(offset), Some(size)) => match t.bytes_at(offset, size) {
                Some(bytes) if Some(hex(&Sha256::digest(bytes))) == function.old_sha256 => {
                    old = Some(
                        arch.disassemble(bytes, offset)
                            .into_iter()
                            .map(|l| format!("{:6x}  {}", l.address - offset, l.text))
                            .collect(),
                    );
                }
                _ => {
                    old_missing = Some(format!(
                        "{} does not hold the old code this package expects",
                        t.path.display()
                    ))
                }
            },
        }
        out.push(FunctionListing {
            name: function.name.clone(),
            old,
            old_missing,
            new,
        });
    }
    Ok(out)
}

/// A symbol's name, or its section's name for a section symbol (string literals, tables).
fn symbol_name(file: &object::File<'_>, index: object::SymbolIndex) -> String {
    let Ok(symbol) = file.symbol_by_index(index) else {
        return format!("#{}", index.0);
    };
    if symbol.kind() == object::SymbolKind::Section {
        if let Some(section) = symbol
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
        {
            return section.name().unwrap_or("?").to_owned();
        }
    }
    symbol.name().unwrap_or("?").to_owned()
}

/// The addend a REL relocation of type `r_type` at `offset` keeps in the field in `data`.
fn implicit_addend(arch: Arch, r_type: u32, data: &[u8], offset: u64) -> i64 {
    let width = arch.implicit_addend_width(r_type).unwrap_or(0);
    let field = usize::try_from(offset)
        .ok()
        .and_then(|at| data.get(at..at.checked_add(width)?));
    match field {
        Some(&[a, b, c, d]) => i64::from(i32::from_le_bytes([a, b, c, d])),
        Some(&[a, b]) => i64::from(i16::from_le_bytes([a, b])),
        Some(&[a]) => i64::from(a as i8),
        _ => 0,
    }
}
