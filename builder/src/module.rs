//! Writing `module.o` and the symbol map from the included functions and data.

use std::collections::{BTreeMap, BTreeSet};

use lpkg_format::SymbolBinding;
use object::write::{Object, Relocation, SectionId, Symbol, SymbolId, SymbolSection};
use object::{
    BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};

use crate::diff::Side;
use crate::error::Error;
use crate::identity::Ref;
use crate::target::{FileId, TargetFile};

/// One pair as the module writer sees it.
pub struct Unit<'a> {
    pub old: &'a Side,
    pub new: &'a Side,
    /// STT_FILE name to look local symbols up in the target with.
    pub file: String,
    /// Compile unit path of the old object, to tell same-named files apart.
    pub unit_path: Option<String>,
}

/// Builds the module.
pub struct ModuleWriter<'a> {
    target: &'a TargetFile,
    out: Object<'static>,
    used_names: BTreeSet<String>,
    /// (unit, function name) -> module symbol of an included function.
    functions: BTreeMap<(usize, String), SymbolId>,
    /// Global included functions by name, for references from other files.
    global_functions: BTreeMap<String, SymbolId>,
    /// (unit, new-object section) -> copied section.
    sections: BTreeMap<(usize, usize), SectionId>,
    /// (unit, new-object symbol) -> module symbol of new data.
    data: BTreeMap<(usize, usize), SymbolId>,
    /// Binding key -> undefined module symbol.
    undefined: BTreeMap<String, SymbolId>,
    pub bindings: Vec<SymbolBinding>,
    /// Unchanged functions `(unit, name, module symbol)` the target lacks (dropped by the
    /// linker), carried because the patch calls them.
    pub carried_functions: Vec<(usize, String, String)>,
    /// Existing data `(name, section, size)` the target lacks, carried likewise.
    pub carried_data: Vec<(String, String, u64)>,
    /// Copied sections whose relocations are still to be written.
    pending: Vec<(usize, usize)>,
    /// Functions earlier packages replace (`--requires`): the target holds their original
    /// code, the old objects the fixed one.
    pub stacked: BTreeSet<String>,
    /// The unit of the shadow-variable runtime, whose functions are copied when the patch
    /// calls them ([`crate::runtime`]).
    pub runtime: Option<usize>,
}

fn section_kind(sec: &crate::objfile::Sec) -> SectionKind {
    if sec.exec() {
        SectionKind::Text
    } else if sec.nobits() {
        SectionKind::UninitializedData
    } else if sec.write() {
        SectionKind::Data
    } else {
        SectionKind::ReadOnlyData
    }
}

impl<'a> ModuleWriter<'a> {
    pub fn new(target: &'a TargetFile) -> ModuleWriter<'a> {
        ModuleWriter {
            target,
            out: Object::new(
                BinaryFormat::Elf,
                target.arch.object_architecture(),
                Endianness::Little,
            ),
            used_names: BTreeSet::new(),
            functions: BTreeMap::new(),
            global_functions: BTreeMap::new(),
            sections: BTreeMap::new(),
            data: BTreeMap::new(),
            undefined: BTreeMap::new(),
            bindings: Vec::new(),
            carried_functions: Vec::new(),
            carried_data: Vec::new(),
            pending: Vec::new(),
            stacked: BTreeSet::new(),
            runtime: None,
        }
    }

    /// A module-wide unique symbol name: `name`, else `name@file`, else `name@file.N`.
    fn unique(&mut self, name: &str, file: &str) -> String {
        let mut candidate = name.to_string();
        let mut n = 1;
        while self.used_names.contains(&candidate) {
            candidate = if n == 1 {
                format!("{name}@{file}")
            } else {
                format!("{name}@{file}.{n}")
            };
            n += 1;
        }
        self.used_names.insert(candidate.clone());
        candidate
    }

    fn copy_section(&mut self, units: &[Unit], u: usize, sec: usize, name: &str) -> SectionId {
        if let Some(&id) = self.sections.get(&(u, sec)) {
            return id;
        }
        let s = &units[u].new.obj.sections[sec];
        let id = self
            .out
            .add_section(Vec::new(), name.as_bytes().to_vec(), section_kind(s));
        if s.nobits() {
            self.out.append_section_bss(id, s.size, s.align);
        } else {
            self.out.append_section_data(id, &s.data, s.align);
        }
        self.sections.insert((u, sec), id);
        self.pending.push((u, sec));
        id
    }

    /// Adds an included function; returns its module symbol name.
    pub fn add_function(&mut self, units: &[Unit], u: usize, name: &str) -> String {
        let side = units[u].new;
        let &i = &side.analysis.functions[name];
        let sym = side.obj.symbols[i].clone();
        let module_name = self.unique(name, &units[u].file);
        let sec = sym.section.expect("defined function");
        let id = self.copy_section(units, u, sec, &format!(".text.{module_name}"));
        let symbol = self.out.add_symbol(Symbol {
            name: module_name.as_bytes().to_vec(),
            value: sym.value,
            size: sym.size,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(id),
            flags: SymbolFlags::None,
        });
        self.functions.insert((u, name.to_string()), symbol);
        if !sym.local {
            self.global_functions.insert(name.to_string(), symbol);
        }
        module_name
    }

    /// Adds a new data object; returns `(name, section name, size)`.
    pub fn add_data(&mut self, units: &[Unit], u: usize, sym_idx: usize) -> (String, String, u64) {
        let side = units[u].new;
        let sym = side.obj.symbols[sym_idx].clone();
        let sec = sym.section.expect("defined data");
        let sec_name = side.obj.sections[sec].name.clone();
        let id = self.copy_section(units, u, sec, &sec_name);
        let symbol = self.out.add_symbol(Symbol {
            name: sym.name.as_bytes().to_vec(),
            value: sym.value,
            size: sym.size,
            kind: SymbolKind::Data,
            // The applier finds lpkg's own symbols (the shadow area's address) by name.
            scope: match sym.name.starts_with("__lpkg_") {
                true => SymbolScope::Dynamic,
                false => SymbolScope::Compilation,
            },
            weak: false,
            section: SymbolSection::Section(id),
            flags: SymbolFlags::None,
        });
        self.data.insert((u, sym_idx), symbol);
        (sym.name, sec_name, sym.size)
    }

    fn bind(
        &mut self,
        key: String,
        name: &str,
        file: &str,
        binding: impl FnOnce(String) -> SymbolBinding,
    ) -> SymbolId {
        if let Some(&id) = self.undefined.get(&key) {
            return id;
        }
        let module_name = self.unique(name, file);
        let id = self.out.add_symbol(Symbol {
            name: module_name.as_bytes().to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Unknown,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        });
        self.bindings.push(binding(module_name));
        self.undefined.insert(key, id);
        id
    }

    /// Whether the target defines the symbol (of the object of unit `u`).
    fn in_target(&self, u: usize, units: &[Unit], name: &str, local: bool) -> Result<bool, Error> {
        let id = FileId {
            name: units[u].file.clone(),
            unit_path: units[u].unit_path.clone(),
        };
        Ok(self.target.lookup(&id, name, local)?.is_some())
    }

    /// A symbol that stays in the target, looked up by the old object's name and binding.
    fn target_symbol(
        &mut self,
        u: usize,
        units: &[Unit],
        name: &str,
        local: bool,
    ) -> Result<SymbolId, Error> {
        let file = units[u].file.clone();
        let id = FileId {
            name: file.clone(),
            unit_path: units[u].unit_path.clone(),
        };
        let found = self.target.lookup(&id, name, local)?;
        let Some(t) = found else {
            return Err(Error::NotInTarget {
                symbol: name.to_string(),
                path: self.target.path.clone(),
                reason: if local {
                    format!("no local symbol {name} after STT_FILE {file}")
                } else {
                    format!("no global symbol {name}")
                },
            });
        };
        let offset = t.value;
        let key = format!("t:{file}:{name}:{local}");
        Ok(self.bind(key, name, &file, |n| SymbolBinding::Target {
            name: n,
            offset,
        }))
    }

    /// Existing data of `size` bytes in the objects, which stays in the target: refused when
    /// the target's is of another size (a target not built from these objects, e.g. with
    /// another configuration: the new code would read past or short of it).
    fn target_data(
        &mut self,
        u: usize,
        units: &[Unit],
        name: &str,
        local: bool,
        size: u64,
    ) -> Result<SymbolId, Error> {
        let id = FileId {
            name: units[u].file.clone(),
            unit_path: units[u].unit_path.clone(),
        };
        if let Some(t) = self.target.lookup(&id, name, local)? {
            if t.size != size && t.size != 0 && size != 0 {
                return Err(crate::error::refuse(
                    name,
                    format!(
                        "size differs between the deployed target ({} bytes) and the build the package is made from ({size} bytes); the target was not built from these sources and configuration (another configure option or compiler): build the package as the target was built",
                        t.size
                    ),
                ));
            }
        }
        self.target_symbol(u, units, name, local)
    }

    /// Refuses when function `name` of unit `u`'s object, which the patch reaches and which
    /// stays in the target, has other code there than in the old object: new code compiled
    /// next to it may rely on what it does beyond its declaration (a clone's specialised
    /// arguments, the registers it leaves alone under `-fipa-ra`), so a target not built from
    /// these objects must have it byte for byte.
    fn check_callee(&self, u: usize, units: &[Unit], name: &str, local: bool) -> Result<(), Error> {
        let old = units[u].old;
        let Some(&index) = old.analysis.functions.get(name) else {
            return Ok(());
        };
        if self.stacked.contains(name) {
            return Ok(());
        }
        let id = FileId {
            name: units[u].file.clone(),
            unit_path: units[u].unit_path.clone(),
        };
        let Some(t) = self.target.lookup(&id, name, local)? else {
            return Ok(());
        };
        let old_sym = &old.obj.symbols[index];
        // A symbol without a size in the target (assembly without `.size`): its bytes are
        // compared over the old object's size.
        let size = if t.size == 0 { old_sym.size } else { t.size };
        let same = self
            .target
            .bytes_at(t.value, size)
            .is_some_and(|bytes| crate::same_code(old, old_sym, bytes));
        if same {
            return Ok(());
        }
        Err(crate::error::refuse(
            name,
            format!(
                "called by the patch and left in the target, but the target's copy ({} bytes at {:#x}) differs from the old object's ({} bytes): the target was not built from these sources and configuration (another configure option or compiler): build the package as the target was built",
                t.size, t.value, old_sym.size
            ),
        ))
    }

    fn global_symbol(&mut self, u: usize, units: &[Unit], name: &str) -> Result<SymbolId, Error> {
        if let Some(&id) = self.global_functions.get(name) {
            return Ok(id);
        }
        if crate::runtime::provides(name) {
            let Some(r) = self.runtime else {
                return Err(crate::error::refuse(
                    name,
                    format!(
                        "this lpkg-builder has no shadow-variable runtime for {} (its compiler could not build one when lpkg was built: for i386, gcc-multilib)",
                        self.target.arch.name()
                    ),
                ));
            };
            if units[r].new.analysis.functions.contains_key(name) {
                let module_name = self.add_function(units, r, name);
                self.carried_functions
                    .push((r, name.to_string(), module_name));
                return Ok(self.global_functions[name]);
            }
        }
        if self.target.global(name).is_some() {
            return self.target_symbol(u, units, name, false);
        }
        if self.target.statically_linked {
            return Err(crate::error::refuse(
                name,
                "the new code calls or reads it, but the target is a statically linked program that does not contain it, and its process loads no library that could: a fix can use only what the program was linked with".to_owned(),
            ));
        }
        let version = self.target.import_version(name);
        let file = units[u].file.clone();
        Ok(self.bind(format!("x:{name}"), name, &file, |n| {
            SymbolBinding::External {
                name: n,
                symbol: name.to_string(),
                version,
            }
        }))
    }

    /// Writes the relocations of every copied section (copying what they need on the way).
    pub fn relocate(&mut self, units: &[Unit]) -> Result<(), Error> {
        // First in, first out: names are handed out in file and function order.
        while !self.pending.is_empty() {
            let (u, sec) = self.pending.remove(0);
            let side = units[u].new;
            let section = &side.obj.sections[sec];
            let code = section.exec().then_some(&section.instructions[..]);
            let holder = side
                .obj
                .named_in(sec)
                .first()
                .map(|&i| side.obj.symbols[i].name.clone())
                .unwrap_or_else(|| section.name.clone());
            let out_id = self.sections[&(u, sec)];
            for rel in section.relocs.clone() {
                let (symbol, addend) = self.reference(units, u, &rel, code, &holder)?;
                self.add_relocation(
                    out_id,
                    Relocation {
                        offset: rel.offset,
                        symbol,
                        addend,
                        flags: RelocationFlags::Elf { r_type: rel.r_type },
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Adds `relocation` to section `id`. Where the architecture keeps addends in the relocated
    /// field (REL), the addend is written there, as a linker expects it.
    fn add_relocation(&mut self, id: SectionId, mut relocation: Relocation) -> Result<(), Error> {
        let RelocationFlags::Elf { r_type } = relocation.flags else {
            return Err(Error::Write("a relocation that is not ELF".into()));
        };
        if let Some(width) = self.target.arch.implicit_addend_width(r_type) {
            let offset = relocation.offset;
            let addend = relocation.addend;
            let fits = match width {
                0 => addend == 0,
                1..=7 => {
                    let half = 1i64 << (8 * width - 1);
                    (-half..half).contains(&addend)
                }
                _ => true,
            };
            let field = usize::try_from(offset).ok().and_then(|at| {
                let data = self.out.section_mut(id).data_mut();
                data.get_mut(at..at.checked_add(width)?)
            });
            match field {
                Some(field) if fits => field.copy_from_slice(&addend.to_le_bytes()[..width]),
                _ => {
                    return Err(Error::Write(format!(
                        "the addend {addend} of a relocation at {offset:#x} does not fit its {width}-byte field"
                    )))
                }
            }
            relocation.addend = 0;
        }
        self.out
            .add_relocation(id, relocation)
            .map_err(|e| Error::Write(e.to_string()))
    }

    /// The module symbol and addend that relocation `rel` of a section of unit `u`'s new
    /// object refers to (`code`: the section's instructions, when it is code; `holder`: what
    /// to name in an error), copying into the module or binding what it needs.
    fn reference(
        &mut self,
        units: &[Unit],
        u: usize,
        rel: &crate::objfile::Rel,
        code: Option<&[(u64, u64)]>,
        holder: &str,
    ) -> Result<(SymbolId, i64), Error> {
        let side = units[u].new;
        let rel = rel.clone();
        let target_sym = &side.obj.symbols[rel.sym];
        let arch = side.obj.arch;
        if arch.reloc_class(rel.r_type).is_none() {
            return Err(Error::UnsupportedRelocation {
                symbol: holder.to_string(),
                offset: rel.offset,
                r_type: arch.reloc_name(rel.r_type),
                target: target_sym.name.clone(),
            });
        }
        // Raw offset into the referenced symbol's section, without bias.
        let raw = (target_sym.value as i64).wrapping_add(rel.addend);
        let r = side.analysis.resolve(&side.obj, &rel, code);
        Ok(match r {
            Ref::Undefined { name, .. } => (self.global_symbol(u, units, &name)?, rel.addend),
            Ref::Func { name, .. } => {
                let Some(&f) = side.analysis.functions.get(&name) else {
                    return Err(Error::BadInput {
                        path: side.obj.path.clone(),
                        reason: format!(
                            "a relocation at {:#x} in {holder} reaches into {name}, \
                             which is not a function of its own",
                            rel.offset
                        ),
                    });
                };
                let fsym = &side.obj.symbols[f];
                let addend = raw.wrapping_sub(fsym.value as i64);
                let local = fsym.local;
                if !self.functions.contains_key(&(u, name.clone()))
                    && !self.in_target(u, units, &name, local)?
                {
                    let module_name = self.add_function(units, u, &name);
                    self.carried_functions.push((u, name.clone(), module_name));
                }
                match self.functions.get(&(u, name.clone())) {
                    Some(&id) => (id, addend),
                    None => {
                        self.check_callee(u, units, &name, local)?;
                        (self.target_symbol(u, units, &name, local)?, addend)
                    }
                }
            }
            Ref::Content { sec: csec, .. } => {
                let cname = side.obj.sections[csec].name.clone();
                let id = self.copy_section(units, u, csec, &cname);
                (self.out.section_symbol(id), raw)
            }
            Ref::Data { sym, .. } => {
                let addend = raw - side.obj.symbols[sym].value as i64;
                let data_sym = &side.obj.symbols[sym];
                if let Some(&id) = self.data.get(&(u, sym)) {
                    (id, addend)
                } else if !data_sym.local {
                    // Existing global (possibly defined by another old object).
                    let name = data_sym.name.clone();
                    if self.in_target(u, units, &name, false)? {
                        let size = data_sym.size;
                        (self.target_data(u, units, &name, false, size)?, addend)
                    } else {
                        let carried = self.add_data(units, u, sym);
                        self.carried_data.push(carried);
                        (self.data[&(u, sym)], addend)
                    }
                } else {
                    // Existing data: the old object's symbol with the same key.
                    let old = units[u].old;
                    let old_sym = side
                        .analysis
                        .data_keys
                        .get(&sym)
                        .and_then(|key| old.analysis.data_keys.iter().find(|(_, k)| *k == key))
                        .map(|(&s, _)| old.obj.symbols[s].clone())
                        .ok_or_else(|| Error::Refused {
                            symbol: side.obj.symbols[sym].name.clone(),
                            reason:
                                "data referenced by the patch is neither new nor in the old object"
                                    .into(),
                        })?;
                    if self.in_target(u, units, &old_sym.name, old_sym.local)? {
                        let (name, local, size) = (&old_sym.name, old_sym.local, old_sym.size);
                        (self.target_data(u, units, name, local, size)?, addend)
                    } else {
                        let carried = self.add_data(units, u, sym);
                        self.carried_data.push(carried);
                        (self.data[&(u, sym)], addend)
                    }
                }
            }
        })
    }

    /// Writes `.eh_frame`: the CIEs and FDEs of the new objects that describe copied code, so
    /// that unwinders find the patch code's CFI (the target's own, once the applier registers
    /// it, for C++ exceptions, thread cancellation and `backtrace()`; lpkg's, for the stack
    /// check). Each FDE's `pc_begin` is relocated against the module's copy of its section;
    /// every other relocation of a record (a CIE's personality routine, an FDE's LSDA in
    /// `.gcc_except_table`) like any relocation of copied code, which carries what it needs
    /// (the LSDA's section, the `DW.ref.*` words that point to the personality routine and the
    /// type infos). `__lpkg_eh_frame` and `__lpkg_eh_frame_end` mark the records (followed by a
    /// zero terminator); `__lpkg_eh_object` is zeroed room the applier registers them with.
    /// FDEs of code that is not copied are left out. Call [`ModuleWriter::relocate`] again
    /// after this: the sections it copied need their own relocations.
    pub fn eh_frame(&mut self, units: &[Unit]) -> Result<(), Error> {
        let mut out = CfiOut::default();
        for (u, unit) in units.iter().enumerate() {
            for section in unit
                .new
                .obj
                .sections
                .iter()
                .filter(|s| s.name == ".eh_frame")
            {
                self.carry_cfi(units, u, section, &mut out)?;
            }
        }
        if out.relocations.is_empty() {
            return Ok(());
        }
        let records_len = out.bytes.len() as u64;
        out.bytes.extend_from_slice(&[0; 4]);
        let id = self
            .out
            .add_section(Vec::new(), b".eh_frame".to_vec(), SectionKind::ReadOnlyData);
        self.out.append_section_data(id, &out.bytes, 8);
        for relocation in out.relocations {
            self.add_relocation(id, relocation)?;
        }
        for (name, value) in [
            (lpkg_format::EH_FRAME_SYMBOL, 0),
            (lpkg_format::EH_FRAME_END_SYMBOL, records_len),
        ] {
            self.out.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value,
                size: 0,
                kind: SymbolKind::Data,
                scope: SymbolScope::Dynamic,
                weak: false,
                section: SymbolSection::Section(id),
                flags: SymbolFlags::None,
            });
        }
        self.eh_object();
        Ok(())
    }

    /// Copies the records of one `.eh_frame` section of unit `u`'s new object that describe
    /// copied code into `out`: each such FDE, its CIE once, and their relocations.
    fn carry_cfi(
        &mut self,
        units: &[Unit],
        u: usize,
        section: &crate::objfile::Sec,
        out: &mut CfiOut,
    ) -> Result<(), Error> {
        let obj = &units[u].new.obj;
        // CIE offset in the section to its offset in `out`.
        let mut cies: BTreeMap<usize, usize> = BTreeMap::new();
        // By offset: each record's relocations are found by binary search, so the whole is
        // linear in the records, not quadratic.
        let mut sorted: Vec<_> = section.relocs.iter().collect();
        sorted.sort_by_key(|r| r.offset);
        let relocs_in = |start: usize, end: usize| {
            let from = sorted.partition_point(|r| r.offset < start as u64);
            let to = sorted.partition_point(|r| r.offset < end as u64);
            sorted[from..to].to_vec()
        };
        let records: Vec<CfiRecord> = cfi_records(&section.data).collect();
        for &record in &records {
            let CfiRecord::Fde { at, end, cie } = record else {
                continue;
            };
            let fde_relocs = relocs_in(at, end);
            let Some(&pc_begin) = fde_relocs.iter().find(|r| r.offset == at as u64 + 8) else {
                continue;
            };
            let code = &obj.symbols[pc_begin.sym];
            let Some(&out_section) = code.section.and_then(|s| self.sections.get(&(u, s))) else {
                continue;
            };
            let Some(CfiRecord::Cie { end: cie_end, .. }) =
                records.iter().copied().find(|r| r.at() == cie)
            else {
                continue;
            };
            let new_cie = match cies.get(&cie) {
                Some(&new_cie) => new_cie,
                None => {
                    let new_cie = out.bytes.len();
                    out.bytes.extend_from_slice(&section.data[cie..cie_end]);
                    for rel in relocs_in(cie, cie_end) {
                        let (symbol, addend) = self.reference(units, u, rel, None, ".eh_frame")?;
                        out.relocations.push(Relocation {
                            offset: (new_cie + rel.offset as usize - cie) as u64,
                            symbol,
                            addend,
                            flags: RelocationFlags::Elf { r_type: rel.r_type },
                        });
                    }
                    cies.insert(cie, new_cie);
                    new_cie
                }
            };
            let new_at = out.bytes.len();
            out.bytes.extend_from_slice(&section.data[at..end]);
            // The CIE pointer counts back from its own field to the CIE.
            let pointer = (new_at + 4 - new_cie) as u32;
            out.bytes[new_at + 4..new_at + 8].copy_from_slice(&pointer.to_le_bytes());
            for rel in fde_relocs {
                let offset = (new_at + rel.offset as usize - at) as u64;
                let (symbol, addend) = if std::ptr::eq(rel, pc_begin) {
                    let addend = rel.addend + code.value as i64;
                    (self.out.section_symbol(out_section), addend)
                } else {
                    self.reference(units, u, rel, None, ".eh_frame")?
                };
                out.relocations.push(Relocation {
                    offset,
                    symbol,
                    addend,
                    flags: RelocationFlags::Elf { r_type: rel.r_type },
                });
            }
        }
        Ok(())
    }

    /// `__lpkg_eh_object`: zeroed room the applier registers the CFI with.
    fn eh_object(&mut self) {
        let object = self.out.add_section(
            Vec::new(),
            b".bss.lpkg_eh_object".to_vec(),
            SectionKind::UninitializedData,
        );
        let size = lpkg_format::EH_OBJECT_SIZE;
        let value = self.out.append_section_bss(object, size, 16);
        self.out.add_symbol(Symbol {
            name: lpkg_format::EH_OBJECT_SYMBOL.as_bytes().to_vec(),
            value,
            size,
            kind: SymbolKind::Data,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(object),
            flags: SymbolFlags::None,
        });
    }

    /// The finished object file.
    pub fn finish(self) -> Result<Vec<u8>, Error> {
        self.out.write().map_err(|e| Error::Write(e.to_string()))
    }
}

/// The module's `.eh_frame` being written: its bytes and relocations.
#[derive(Default)]
struct CfiOut {
    bytes: Vec<u8>,
    relocations: Vec<Relocation>,
}

/// One record of an `.eh_frame` section: `[at, end)` in the section's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CfiRecord {
    /// A common information entry.
    Cie { at: usize, end: usize },
    /// A frame description entry and the offset of its CIE.
    Fde { at: usize, end: usize, cie: usize },
}

impl CfiRecord {
    fn at(self) -> usize {
        match self {
            CfiRecord::Cie { at, .. } | CfiRecord::Fde { at, .. } => at,
        }
    }
}

/// The records of an `.eh_frame` section of a compiler's object, up to a terminator or to the
/// first record that does not parse (64-bit lengths are not emitted for objects this small).
fn cfi_records(data: &[u8]) -> impl Iterator<Item = CfiRecord> + '_ {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            data.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let len = word(at)? as usize;
        if len == 0 || len == 0xffff_ffff {
            return None;
        }
        let end = at
            .checked_add(4)?
            .checked_add(len)
            .filter(|&e| e <= data.len())?;
        let id = word(at + 4)? as usize;
        let record = if id == 0 {
            CfiRecord::Cie { at, end }
        } else {
            CfiRecord::Fde {
                at,
                end,
                cie: (at + 4).checked_sub(id)?,
            }
        };
        at = end;
        Some(record)
    })
}
