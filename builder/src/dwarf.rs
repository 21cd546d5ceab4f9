//! What the builder needs from an object's DWARF: source positions, which section belongs to
//! which source function, inlined callees, static variables, line numbers and struct layouts.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use gimli::{AttributeValue, EndianSlice, LittleEndian, UnitOffset};

use crate::objfile::Obj;

type R<'a> = EndianSlice<'a, LittleEndian>;

/// One struct or union layout: byte size and `(member, offset, size)`.
pub type Layout = (u64, Vec<(String, u64, u64)>);

/// Where a function is declared: the base name of its file (shared by the unit's functions)
/// and the line; shown as `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decl(pub Arc<str>, pub u64);

impl std::fmt::Display for Decl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

/// The line numbers of an object's code, read from its line programs only when a function
/// needs them (one whose change could be line numbers only), or ahead of that on a core that
/// would be idle otherwise (`read`'s `lines_now`): decoding every row of a large object's
/// programs was a tenth of the build.
#[derive(Debug, Default)]
pub struct Lines {
    /// The relocated `.debug_line` section.
    debug_line: Vec<u8>,
    /// `(offset, address size)` of each compile unit's line program, in unit order.
    programs: Vec<(gimli::DebugLineOffset, u8)>,
    /// `(section index, file, line)`, sorted, unique; one flat list rather than a set per
    /// section (tens of thousands of them took time to build). `file` is [`file_key`].
    read: std::sync::OnceLock<Vec<(usize, u64, u64)>>,
}

impl Clone for Lines {
    fn clone(&self) -> Lines {
        Lines {
            debug_line: self.debug_line.clone(),
            programs: self.programs.clone(),
            read: self.read.get().cloned().map(Into::into).unwrap_or_default(),
        }
    }
}

impl Lines {
    /// `(file, line)` with code in section `sec` of `obj` (the object the facts were read
    /// from), sorted. Code inlined from a header has its rows in the header's file: its lines
    /// do not move with the including file's.
    pub fn of(&self, obj: &Obj, sec: usize) -> Vec<(u64, u64)> {
        let all = self.all(obj);
        let from = all.partition_point(|&(s, _, _)| s < sec);
        let to = all.partition_point(|&(s, _, _)| s <= sec);
        all[from..to]
            .iter()
            .map(|&(_, f, line)| (f, line))
            .collect()
    }

    /// Whether the programs are still to be read.
    pub fn is_unread(&self) -> bool {
        self.read.get().is_none()
    }

    /// Every `(section, file, line)`, read on the first call.
    pub fn all(&self, obj: &Obj) -> &[(usize, u64, u64)] {
        self.read
            .get_or_init(|| read_lines(obj, &self.debug_line, &self.programs))
    }
}

/// Every `(section, file, line)` of the programs, sorted, unique. A broken program leaves the
/// lines read before it.
fn read_lines(
    obj: &Obj,
    debug_line: &[u8],
    programs: &[(gimli::DebugLineOffset, u8)],
) -> Vec<(usize, u64, u64)> {
    let mut all = Vec::new();
    let _ = read_programs(obj, debug_line, programs, &mut all);
    if !all.is_sorted() {
        all.sort_unstable();
    }
    all.dedup();
    all
}

/// `None` when a program is broken (the lines before the fault are in `all`).
fn read_programs(
    obj: &Obj,
    debug_line: &[u8],
    programs: &[(gimli::DebugLineOffset, u8)],
    all: &mut Vec<(usize, u64, u64)>,
) -> Option<()> {
    let debug_line = gimli::DebugLine::new(debug_line, LittleEndian);
    for (index, &(offset, address_size)) in programs.iter().enumerate() {
        let program = debug_line.program(offset, address_size, None, None).ok()?;
        // Rows come in address order, a function's rows together: look a section up only
        // when a row leaves the last one, and gather its lines before adding them.
        let mut current: Option<(std::ops::Range<u64>, usize)> = None;
        let mut lines: Vec<(u64, u64)> = Vec::new();
        let read = crate::line_rows::for_each_row(program.header(), |addr, file, line| {
            if line == 0 {
                return;
            }
            if !current.as_ref().is_some_and(|(r, _)| r.contains(&addr)) {
                if let Some((_, sec)) = current.take() {
                    add_lines(all, sec, &mut lines);
                }
                lines.clear();
                current = obj.section_at(addr).map(|(sec, offset)| {
                    let start = addr - offset;
                    (start..start + obj.sections[sec].size.max(1), sec)
                });
            }
            let row = (file_key(index, file), line);
            if current.is_some() && lines.last() != Some(&row) {
                lines.push(row);
            }
        });
        if let Some((_, sec)) = current {
            add_lines(all, sec, &mut lines);
        }
        read.ok()?;
    }
    Some(())
}

/// Facts read from one object's DWARF. Everything is empty when the object has no DWARF.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// Full path (comp_dir joined with name) of the compile unit.
    pub cu_path: Option<String>,
    /// Source function name -> `file:line` of its declaration.
    pub decl: HashMap<Arc<str>, Decl>,
    /// Section index -> source function whose code lives there.
    pub section_function: BTreeMap<usize, Arc<str>>,
    /// Section index -> names of functions inlined into that code.
    pub inlined: BTreeMap<usize, BTreeSet<String>>,
    /// `(section, offset)` of a static variable -> `function::variable` (`::variable` at file
    /// scope).
    pub statics: BTreeMap<(usize, u64), String>,
    /// Lines with code per section, read when first asked for (`Lines::of`).
    pub lines: Lines,
    /// `(section, offset)` of a variable -> the struct/union name behind its type.
    pub var_types: BTreeMap<(usize, u64), String>,
    /// Struct/union name -> layout.
    pub layouts: BTreeMap<String, Layout>,
    /// Source function name -> struct/union names its code uses (parameters, locals, inlined
    /// code, through pointers and typedefs).
    pub uses_types: BTreeMap<String, BTreeSet<String>>,
}

/// Which facts a side's comparison asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Everything (the new side).
    All,
    /// What is asked of the old side: its static variables (which name its data), struct
    /// layouts, unit path and line numbers. Declarations, the functions of sections, inlining
    /// and type uses are asked of the new side only; reading them took most of the DIE walk.
    OldSide,
}

/// A DIE on the walk's path, as the scope of what it contains.
enum Scope {
    /// Not a function with a name.
    None,
    /// A function, by name.
    Function(Arc<str>),
    /// A function whose name is read when something in it needs it (the old side's walk).
    Unread(UnitOffset),
}

/// The name of the innermost named function around the DIE that `stack` leads to.
fn enclosing_name<'a>(
    stack: &[Scope],
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
) -> Option<Arc<str>> {
    stack.iter().rev().find_map(|scope| match scope {
        Scope::None => None,
        Scope::Function(name) => Some(name.clone()),
        Scope::Unread(offset) => {
            let entry = unit.entry(*offset).ok()?;
            DieAttrs::read(&entry).name_shared(dwarf, unit)
        }
    })
}

/// Reads the `wanted` facts; DWARF errors leave the facts partial (DWARF only refines
/// decisions). `.debug_line` is taken from `obj` for the line numbers, read when first asked
/// for, or now with `lines_now`: on another thread, while this one reads the DIEs.
pub fn read(obj: &mut Obj, wanted: Wanted, lines_now: bool) -> Facts {
    let programs = line_programs(obj);
    let mut facts = Facts::default();
    let read_now = std::thread::scope(|scope| {
        let (obj, programs) = (&*obj, &programs);
        let lines = lines_now.then(|| {
            scope.spawn(move || {
                let debug_line = obj.debug.get(".debug_line").map_or(&[][..], |v| &v[..]);
                read_lines(obj, debug_line, programs)
            })
        });
        // Partial facts are still useful: DWARF only refines the builder's decisions.
        let _ = read_into(obj, wanted, &mut facts);
        lines.map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    facts.lines = Lines {
        debug_line: obj.debug.remove(".debug_line").unwrap_or_default(),
        programs,
        read: read_now.map(Into::into).unwrap_or_default(),
    };
    facts
}

/// The object's DWARF, its sections borrowed from `obj`.
fn load(obj: &Obj) -> Result<gimli::Dwarf<R<'_>>, gimli::Error> {
    let empty: &[u8] = &[];
    gimli::Dwarf::load(|id| -> Result<R<'_>, gimli::Error> {
        let data = obj.debug.get(id.name()).map(|v| &v[..]).unwrap_or(empty);
        Ok(EndianSlice::new(data, LittleEndian))
    })
}

/// `(offset, address size)` of the line program of each compile unit, in unit order, up to
/// the first unit that does not parse.
fn line_programs(obj: &Obj) -> Vec<(gimli::DebugLineOffset, u8)> {
    let mut out = Vec::new();
    let Ok(dwarf) = load(obj) else {
        return out;
    };
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            break;
        };
        if let Some(program) = &unit.line_program {
            let header = program.header();
            out.push((header.offset(), header.address_size()));
        }
    }
    out
}

fn die_name<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    offset: UnitOffset,
    depth: u32,
) -> Option<String> {
    if depth > 4 {
        return None;
    }
    let entry = unit.entry(offset).ok()?;
    if let Ok(Some(v)) = entry.attr_value(gimli::DW_AT_name) {
        if let Ok(s) = dwarf.attr_string(unit, v) {
            return Some(s.to_string_lossy().into_owned());
        }
    }
    for at in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        if let Ok(Some(AttributeValue::UnitRef(o))) = entry.attr_value(at) {
            return die_name(dwarf, unit, o, depth + 1);
        }
    }
    None
}

fn decl_of<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    offset: UnitOffset,
    depth: u32,
    files: &mut BTreeMap<u64, Option<Arc<str>>>,
) -> Option<Decl> {
    if depth > 4 {
        return None;
    }
    let entry = unit.entry(offset).ok()?;
    let line = entry
        .attr_value(gimli::DW_AT_decl_line)
        .ok()
        .flatten()
        .and_then(|v| v.udata_value());
    let file = match entry.attr_value(gimli::DW_AT_decl_file).ok().flatten() {
        Some(AttributeValue::FileIndex(i)) => Some(i),
        Some(v) => v.udata_value(),
        None => None,
    };
    if let (Some(line), Some(file)) = (line, file) {
        return decl_at(dwarf, unit, file, line, files);
    }
    for at in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        if let Ok(Some(AttributeValue::UnitRef(o))) = entry.attr_value(at) {
            return decl_of(dwarf, unit, o, depth + 1, files);
        }
    }
    None
}

/// Name of the struct/union reached from a type reference, through pointers, typedefs,
/// qualifiers and arrays.
fn struct_behind<'a>(
    unit: &gimli::Unit<R<'a>>,
    dwarf: &gimli::Dwarf<R<'a>>,
    mut offset: UnitOffset,
) -> Option<String> {
    for _ in 0..10 {
        let entry = unit.entry(offset).ok()?;
        match entry.tag() {
            gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
                let v = entry.attr_value(gimli::DW_AT_name).ok()??;
                return Some(
                    dwarf
                        .attr_string(unit, v)
                        .ok()?
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            _ => match entry.attr_value(gimli::DW_AT_type).ok()? {
                Some(AttributeValue::UnitRef(o)) => offset = o,
                _ => return None,
            },
        }
    }
    None
}

/// The byte size of the type at `offset` of `units[unit]`, through typedefs, qualifiers and
/// (for arrays without a size) the element type; references into other units (`DW_FORM_ref_addr`,
/// as dwz writes them in linked files' DWARF) are followed. 0 when unknown.
fn type_size<'a>(units: &[gimli::Unit<R<'a>>], mut unit: usize, mut offset: UnitOffset) -> u64 {
    for _ in 0..10 {
        let Ok(entry) = units[unit].entry(offset) else {
            return 0;
        };
        if let Ok(Some(v)) = entry.attr_value(gimli::DW_AT_byte_size) {
            return v.udata_value().unwrap_or(0);
        }
        match entry.attr_value(gimli::DW_AT_type) {
            Ok(Some(AttributeValue::UnitRef(o))) => offset = o,
            Ok(Some(AttributeValue::DebugInfoRef(at))) => match unit_of(units, at) {
                Some((u, o)) => (unit, offset) = (u, o),
                None => return 0,
            },
            _ => return 0,
        }
    }
    0
}

/// Adds the layouts defined among the children of `node` (and in namespaces below, up to a
/// depth of 8) to `out`.
fn scope_layouts<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    units: &[gimli::Unit<R<'a>>],
    unit: usize,
    node: gimli::EntriesTreeNode<'_, '_, '_, R<'a>>,
    depth: usize,
    out: &mut BTreeMap<String, Vec<Layout>>,
) -> Result<(), gimli::Error> {
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        match entry.tag() {
            gimli::DW_TAG_namespace if depth < 8 => {
                scope_layouts(dwarf, units, unit, child, depth + 1, out)?;
            }
            gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
                if let Some(AttributeValue::Flag(true)) =
                    entry.attr_value(gimli::DW_AT_declaration)?
                {
                    continue;
                }
                let Some(name) = entry.attr_value(gimli::DW_AT_name)? else {
                    continue;
                };
                let name = dwarf.attr_string(&units[unit], name)?;
                let layout = layout_of(dwarf, units, unit, entry)?;
                let known = out.entry(name.to_string_lossy().into_owned()).or_default();
                if !known.contains(&layout) {
                    known.push(layout);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The unit of `units` (in `.debug_info` order) holding the DIE at `at`, and its offset there.
fn unit_of(
    units: &[gimli::Unit<R<'_>>],
    at: gimli::DebugInfoOffset,
) -> Option<(usize, UnitOffset)> {
    let start = |u: &gimli::Unit<R<'_>>| u.header.offset().as_debug_info_offset();
    let i = units
        .partition_point(|u| start(u).is_some_and(|s| s <= at))
        .checked_sub(1)?;
    Some((i, at.to_unit_offset(&units[i].header)?))
}

/// The layout of the struct or union `entry` of `units[unit]`: its size and members.
fn layout_of<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    units: &[gimli::Unit<R<'a>>],
    unit: usize,
    entry: &gimli::DebuggingInformationEntry<'_, '_, R<'a>>,
) -> Result<Layout, gimli::Error> {
    let u = &units[unit];
    let size = entry
        .attr_value(gimli::DW_AT_byte_size)?
        .and_then(|v| v.udata_value())
        .unwrap_or(0);
    let mut members = Vec::new();
    let mut tree = u.entries_tree(Some(entry.offset()))?;
    let root = tree.root()?;
    let mut children = root.children();
    while let Some(child) = children.next()? {
        let e = child.entry();
        if e.tag() != gimli::DW_TAG_member {
            continue;
        }
        let mname = match e.attr_value(gimli::DW_AT_name)? {
            Some(v) => dwarf.attr_string(u, v)?.to_string_lossy().into_owned(),
            None => String::new(),
        };
        let moff = e
            .attr_value(gimli::DW_AT_data_member_location)?
            .and_then(|v| v.udata_value())
            .unwrap_or(0);
        let msize = match e.attr_value(gimli::DW_AT_type)? {
            Some(AttributeValue::UnitRef(t)) => type_size(units, unit, t),
            Some(AttributeValue::DebugInfoRef(at)) => {
                unit_of(units, at).map_or(0, |(u, t)| type_size(units, u, t))
            }
            _ => 0,
        };
        members.push((mname, moff, msize));
    }
    Ok((size, members))
}

/// Every named struct and union layout of a linked file's DWARF (dwz's partial units included)
/// at file scope or in a namespace, each distinct layout of a name once: what the deployed
/// build's data looks like. Types defined inside functions are not read: that walk would parse
/// every DIE of a large target, where this one skips each function by its sibling link. Empty
/// without DWARF; a unit that does not parse ends the walk.
pub fn linked_layouts(
    sections: &BTreeMap<String, std::borrow::Cow<'_, [u8]>>,
) -> BTreeMap<String, Vec<Layout>> {
    let mut out: BTreeMap<String, Vec<Layout>> = BTreeMap::new();
    let empty: &[u8] = &[];
    let Ok(dwarf) = gimli::Dwarf::load(|id| -> Result<R<'_>, gimli::Error> {
        let data = sections.get(id.name()).map(|v| &v[..]).unwrap_or(empty);
        Ok(EndianSlice::new(data, LittleEndian))
    }) else {
        return out;
    };
    let mut units = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        match dwarf.unit(header) {
            Ok(unit) => units.push(unit),
            Err(_) => break,
        }
    }
    for i in 0..units.len() {
        let Ok(mut tree) = units[i].entries_tree(None) else {
            continue;
        };
        if let Ok(root) = tree.root() {
            let _ = scope_layouts(&dwarf, &units, i, root, 0, &mut out);
        }
    }
    out
}

/// The attributes of one DIE that `read_into` looks at (the first of each name).
#[derive(Default)]
struct DieAttrs<'a> {
    name: Option<AttributeValue<R<'a>>>,
    ty: Option<AttributeValue<R<'a>>>,
    abstract_origin: Option<AttributeValue<R<'a>>>,
    specification: Option<AttributeValue<R<'a>>>,
    decl_file: Option<AttributeValue<R<'a>>>,
    decl_line: Option<AttributeValue<R<'a>>>,
    location: Option<AttributeValue<R<'a>>>,
    declaration: Option<AttributeValue<R<'a>>>,
    /// The last of each, as `die_ranges` takes them.
    low_pc: Option<AttributeValue<R<'a>>>,
    high_pc: Option<AttributeValue<R<'a>>>,
    /// Has `DW_AT_ranges`, or an attribute that does not parse: `die_ranges` decides.
    ranges_or_broken: bool,
}

impl<'a> DieAttrs<'a> {
    /// Reads the attributes up to the first one that does not parse (as `attr_value` would
    /// fail for those behind it).
    fn read(entry: &gimli::DebuggingInformationEntry<'_, '_, R<'a>>) -> DieAttrs<'a> {
        let mut out = DieAttrs::default();
        let mut attrs = entry.attrs();
        loop {
            let attr = match attrs.next() {
                Ok(Some(attr)) => attr,
                Ok(None) => break,
                Err(_) => {
                    out.ranges_or_broken = true;
                    break;
                }
            };
            let slot = match attr.name() {
                gimli::DW_AT_low_pc => {
                    out.low_pc = Some(attr.value());
                    continue;
                }
                gimli::DW_AT_high_pc => {
                    out.high_pc = Some(attr.value());
                    continue;
                }
                gimli::DW_AT_ranges => {
                    out.ranges_or_broken = true;
                    continue;
                }
                gimli::DW_AT_name => &mut out.name,
                gimli::DW_AT_type => &mut out.ty,
                gimli::DW_AT_abstract_origin => &mut out.abstract_origin,
                gimli::DW_AT_specification => &mut out.specification,
                gimli::DW_AT_decl_file => &mut out.decl_file,
                gimli::DW_AT_decl_line => &mut out.decl_line,
                gimli::DW_AT_location => &mut out.location,
                gimli::DW_AT_declaration => &mut out.declaration,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(attr.value());
            }
        }
        out
    }

    /// The DIE it points at through `DW_AT_abstract_origin`, else `DW_AT_specification`.
    fn origin(&self) -> Option<UnitOffset> {
        for at in [&self.abstract_origin, &self.specification] {
            if let Some(AttributeValue::UnitRef(o)) = at {
                return Some(*o);
            }
        }
        None
    }

    /// Calls `f` with the start of each of the DIE's address ranges, as `die_ranges` gives them.
    fn range_starts(
        &self,
        dwarf: &gimli::Dwarf<R<'a>>,
        unit: &gimli::Unit<R<'a>>,
        entry: &gimli::DebuggingInformationEntry<'_, '_, R<'a>>,
        mut f: impl FnMut(u64),
    ) -> Result<(), gimli::Error> {
        if self.ranges_or_broken {
            let mut ranges = dwarf.die_ranges(unit, entry)?;
            while let Some(range) = ranges.next()? {
                f(range.begin);
            }
            return Ok(());
        }
        let Some(low) = self.low_pc else {
            return Ok(());
        };
        let begin = dwarf
            .attr_address(unit, low)?
            .ok_or(gimli::Error::UnsupportedAttributeForm)?;
        let has_end = match self.high_pc {
            None => false,
            Some(AttributeValue::Udata(_)) => true,
            Some(high) => {
                dwarf
                    .attr_address(unit, high)?
                    .ok_or(gimli::Error::UnsupportedAttributeForm)?;
                true
            }
        };
        if has_end {
            f(begin);
        }
        Ok(())
    }

    /// As `name`, shared.
    fn name_shared(
        &self,
        dwarf: &gimli::Dwarf<R<'a>>,
        unit: &gimli::Unit<R<'a>>,
    ) -> Option<Arc<str>> {
        if let Some(v) = &self.name {
            if let Ok(s) = dwarf.attr_string(unit, *v) {
                return Some(Arc::from(&*s.to_string_lossy()));
            }
        }
        die_name(dwarf, unit, self.origin()?, 1).map(Arc::from)
    }

    /// As `die_name` of this DIE.
    fn name(&self, dwarf: &gimli::Dwarf<R<'a>>, unit: &gimli::Unit<R<'a>>) -> Option<String> {
        if let Some(v) = &self.name {
            if let Ok(s) = dwarf.attr_string(unit, *v) {
                return Some(s.to_string_lossy().into_owned());
            }
        }
        die_name(dwarf, unit, self.origin()?, 1)
    }

    /// As `decl_of` this DIE.
    fn decl(
        &self,
        dwarf: &gimli::Dwarf<R<'a>>,
        unit: &gimli::Unit<R<'a>>,
        files: &mut BTreeMap<u64, Option<Arc<str>>>,
    ) -> Option<Decl> {
        let line = self.decl_line.as_ref().and_then(|v| v.udata_value());
        let file = match &self.decl_file {
            Some(AttributeValue::FileIndex(i)) => Some(*i),
            Some(v) => v.udata_value(),
            None => None,
        };
        if let (Some(line), Some(file)) = (line, file) {
            return decl_at(dwarf, unit, file, line, files);
        }
        decl_of(dwarf, unit, self.origin()?, 1, files)
    }
}

/// `file:line` of a declaration, the file by its index in the unit's line program; `files`
/// caches the unit's file base names by index.
fn decl_at<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    file: u64,
    line: u64,
    files: &mut BTreeMap<u64, Option<Arc<str>>>,
) -> Option<Decl> {
    let base = files.entry(file).or_insert_with(|| {
        let program = unit.line_program.as_ref()?;
        let entry = program.header().file(file)?;
        let path = dwarf.attr_string(unit, entry.path_name()).ok()?;
        let path = path.to_string_lossy();
        Some(Arc::from(path.rsplit('/').next().unwrap_or(&path)))
    });
    Some(Decl(base.clone()?, line))
}

/// Adds `what` to the types used by `user`.
fn insert_use(uses: &mut BTreeMap<String, BTreeSet<String>>, user: &str, what: String) {
    match uses.get_mut(user) {
        Some(set) => {
            set.insert(what);
        }
        None => {
            uses.insert(user.to_owned(), BTreeSet::from([what]));
        }
    }
}

fn read_into(obj: &Obj, wanted: Wanted, facts: &mut Facts) -> Result<(), gimli::Error> {
    let all = wanted == Wanted::All;
    let dwarf = load(obj)?;
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        if facts.cu_path.is_none() {
            facts.cu_path = unit_path(&unit);
        }
        let mut walk = UnitWalk {
            obj,
            dwarf: &dwarf,
            unit: &unit,
            all,
            behind: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        walk.read_dies(facts)?;
    }
    Ok(())
}

/// What the handlers of one unit's DIEs share.
struct UnitWalk<'a, 'u> {
    obj: &'u Obj,
    dwarf: &'u gimli::Dwarf<R<'a>>,
    unit: &'u gimli::Unit<R<'a>>,
    /// Everything is read (the new side), not only what the old side is asked for.
    all: bool,
    /// `struct_behind` by type offset: a unit's DIEs share a few types.
    behind: BTreeMap<UnitOffset, Option<String>>,
    files: BTreeMap<u64, Option<Arc<str>>>,
}

impl<'a> UnitWalk<'a, '_> {
    /// Every DIE of the unit, depth first, each handled by its tag.
    fn read_dies(&mut self, facts: &mut Facts) -> Result<(), gimli::Error> {
        let unit = self.unit;
        // Scopes of the DIEs around the current one, by depth.
        let mut stack: Vec<Scope> = Vec::new();
        let mut depth: isize = 0;
        let mut entries = unit.entries();
        while let Some((delta, entry)) = entries.next_dfs()? {
            depth += delta;
            stack.truncate(depth.max(0) as usize);
            let tag = entry.tag();
            if !self.reads(tag, entry) {
                stack.push(Scope::None);
                continue;
            }
            if !self.all {
                match tag {
                    gimli::DW_TAG_subprogram => {
                        stack.push(Scope::Unread(entry.offset()));
                        continue;
                    }
                    gimli::DW_TAG_inlined_subroutine => {
                        stack.push(Scope::None);
                        continue;
                    }
                    _ => {}
                }
            }
            // Borrowed: most DIEs never need it. (The old side's walk leaves names unread:
            // `enclosing_name` reads them.)
            let enclosing: Option<&str> = stack.iter().rev().find_map(|s| match s {
                Scope::Function(name) => Some(&**name),
                _ => None,
            });
            // Every attribute this DIE needs, in one pass (each `attr_value` parses the
            // attributes again from the start).
            let attrs = DieAttrs::read(entry);
            let mut this_function = None;
            match tag {
                gimli::DW_TAG_subprogram => {
                    this_function = self.subprogram(entry, &attrs, facts)?
                }
                gimli::DW_TAG_inlined_subroutine => {
                    self.inlined_subroutine(entry, &attrs, enclosing, facts)?
                }
                gimli::DW_TAG_variable => self.variable(entry.offset(), &attrs, &stack, facts),
                gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
                    self.structure(entry, &attrs, facts)?
                }
                _ => {}
            }
            // Types used by the enclosing (or this) function.
            if let Some(user) = this_function.as_deref().or(enclosing) {
                self.type_use(user, &attrs, facts);
            }
            stack.push(this_function.map_or(Scope::None, Scope::Function));
        }
        Ok(())
    }

    /// Whether the DIE is read at all: the tags with a handler, and (new side only) any DIE
    /// with a type, which its abbreviation tells without parsing it (call sites, lexical
    /// blocks and the like have none).
    fn reads(
        &self,
        tag: gimli::DwTag,
        entry: &gimli::DebuggingInformationEntry<'_, '_, R<'a>>,
    ) -> bool {
        let handled = matches!(
            tag,
            gimli::DW_TAG_subprogram
                | gimli::DW_TAG_inlined_subroutine
                | gimli::DW_TAG_variable
                | gimli::DW_TAG_structure_type
                | gimli::DW_TAG_union_type
        );
        let typed = || {
            self.unit.abbreviations.get(entry.code()).is_none_or(|a| {
                a.attributes()
                    .iter()
                    .any(|spec| spec.name() == gimli::DW_AT_type)
            })
        };
        handled || self.all && typed()
    }

    /// A function: its declaration, and which sections its code is in. Returns its name.
    fn subprogram(
        &mut self,
        entry: &gimli::DebuggingInformationEntry<'_, '_, R<'a>>,
        attrs: &DieAttrs<'a>,
        facts: &mut Facts,
    ) -> Result<Option<Arc<str>>, gimli::Error> {
        // Shared by the declaration, the sections and the stack.
        let name = attrs.name_shared(self.dwarf, self.unit);
        if let Some(name) = &name {
            // One hash of the name, not two.
            if let Entry::Vacant(slot) = facts.decl.entry(name.clone()) {
                if let Some(decl) = attrs.decl(self.dwarf, self.unit, &mut self.files) {
                    slot.insert(decl);
                }
            }
            let obj = self.obj;
            attrs.range_starts(self.dwarf, self.unit, entry, |begin| {
                if let Some((sec, _)) = obj.section_at(begin) {
                    facts
                        .section_function
                        .entry(sec)
                        .or_insert_with(|| name.clone());
                }
            })?;
        }
        Ok(name)
    }

    /// Code inlined into the enclosing function: which sections hold it, and (for the
    /// caller's types) which function it came from.
    fn inlined_subroutine(
        &self,
        entry: &gimli::DebuggingInformationEntry<'_, '_, R<'a>>,
        attrs: &DieAttrs<'a>,
        enclosing: Option<&str>,
        facts: &mut Facts,
    ) -> Result<(), gimli::Error> {
        let Some(callee) = attrs.name(self.dwarf, self.unit) else {
            return Ok(());
        };
        let obj = self.obj;
        attrs.range_starts(self.dwarf, self.unit, entry, |begin| {
            if let Some((sec, _)) = obj.section_at(begin) {
                facts.inlined.entry(sec).or_default().insert(callee.clone());
            }
        })?;
        // Code inlined here uses the callee's types too: record the callee so that the caller
        // inherits them (`types_used_by`).
        if let Some(user) = enclosing {
            insert_use(&mut facts.uses_types, user, format!("fn {callee}"));
        }
        Ok(())
    }

    /// A variable at a fixed address: the static it names, and (new side) its struct type.
    fn variable(
        &mut self,
        offset: UnitOffset,
        attrs: &DieAttrs<'a>,
        stack: &[Scope],
        facts: &mut Facts,
    ) {
        let Some(AttributeValue::Exprloc(expr)) = &attrs.location else {
            return;
        };
        let bytes = expr.0.slice();
        // `DW_OP_addr` and an address of the unit's size (8 bytes for x86_64, 4 for i386).
        let size = usize::from(self.unit.encoding().address_size);
        if bytes.len() != 1 + size || size > 8 || bytes[0] != gimli::DW_OP_addr.0 {
            return;
        }
        let mut le = [0u8; 8];
        le[..size].copy_from_slice(&bytes[1..]);
        let addr = u64::from_le_bytes(le);
        let (Some(at), Some(var)) = (self.obj.section_at(addr), attrs.name(self.dwarf, self.unit))
        else {
            return;
        };
        let scope = enclosing_name(stack, self.dwarf, self.unit);
        let scope = scope.as_deref().unwrap_or_default();
        facts.statics.entry(at).or_insert(format!("{scope}::{var}"));
        if self.all {
            if let Some(ty) = variable_struct(self.dwarf, self.unit, offset, &mut self.behind) {
                facts.var_types.entry(at).or_insert(ty);
            }
        }
    }

    /// A struct or union defined here: its size and members.
    fn structure(
        &self,
        entry: &gimli::DebuggingInformationEntry<'_, '_, R<'a>>,
        attrs: &DieAttrs<'a>,
        facts: &mut Facts,
    ) -> Result<(), gimli::Error> {
        let declaration = matches!(attrs.declaration, Some(AttributeValue::Flag(true)));
        let (false, Some(v)) = (declaration, attrs.name) else {
            return Ok(());
        };
        let (dwarf, unit) = (self.dwarf, self.unit);
        let name = dwarf.attr_string(unit, v)?.to_string_lossy().into_owned();
        let layout = layout_of(dwarf, std::slice::from_ref(unit), 0, entry)?;
        facts.layouts.insert(name, layout);
        Ok(())
    }

    /// The struct behind the DIE's type, as used by function `user` (new side only).
    fn type_use(&mut self, user: &str, attrs: &DieAttrs<'a>, facts: &mut Facts) {
        let (true, Some(AttributeValue::UnitRef(t))) = (self.all, &attrs.ty) else {
            return;
        };
        let (unit, dwarf) = (self.unit, self.dwarf);
        let s = self
            .behind
            .entry(*t)
            .or_insert_with(|| struct_behind(unit, dwarf, *t));
        if let Some(s) = s {
            insert_use(&mut facts.uses_types, user, s.clone());
        }
    }
}

/// Appends the `(file, line)`s of one run of rows in section `sec` (emptying `lines`). Runs
/// come in section order, so the list stays sorted unless a section has several runs
/// (`read_lines` sorts it then).
fn add_lines(all: &mut Vec<(usize, u64, u64)>, sec: usize, lines: &mut Vec<(u64, u64)>) {
    lines.sort_unstable();
    lines.dedup();
    all.extend(lines.drain(..).map(|(file, line)| (sec, file, line)));
}

/// A file of the object's line programs: its index in the file table of the `program`th
/// program. Old and new objects of one source list their files in the same order (the order
/// of the includes); where they do not, lines of the same file look like different files and a
/// line-only change looks like a change: never the other way round.
fn file_key(program: usize, file: u64) -> u64 {
    ((program as u64) << 32) | (file & 0xffff_ffff)
}

impl Facts {
    /// Struct/union names used by `function`, including through functions inlined into it.
    pub fn types_used_by(&self, function: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![function.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(f) = todo.pop() {
            if !seen.insert(f.clone()) {
                continue;
            }
            for t in self.uses_types.get(&f).into_iter().flatten() {
                match t.strip_prefix("fn ") {
                    Some(callee) => todo.push(callee.to_string()),
                    None => {
                        out.insert(t.clone());
                    }
                }
            }
        }
        out
    }
}

/// `comp_dir/name` of a compile unit (just `name` when it is absolute).
fn unit_path(unit: &gimli::Unit<R<'_>>) -> Option<String> {
    let name = unit.name.map(|n| n.to_string_lossy().into_owned())?;
    if name.starts_with('/') {
        return Some(name);
    }
    match unit.comp_dir {
        Some(dir) => Some(format!("{}/{name}", dir.to_string_lossy())),
        None => Some(name),
    }
}

/// Compile unit paths of a linked file, in link order; empty without DWARF.
pub fn unit_paths(sections: &BTreeMap<String, std::borrow::Cow<'_, [u8]>>) -> Vec<String> {
    let empty: &[u8] = &[];
    let Ok(dwarf) = gimli::Dwarf::load(|id| -> Result<R<'_>, gimli::Error> {
        let data = sections.get(id.name()).map(|v| &v[..]).unwrap_or(empty);
        Ok(EndianSlice::new(data, LittleEndian))
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        if let Ok(unit) = dwarf.unit(header) {
            if let Some(p) = unit_path(&unit) {
                out.push(p);
            }
        }
    }
    out
}

/// The struct/union behind a variable's type (through its abstract origin or specification).
fn variable_struct<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    offset: UnitOffset,
    behind: &mut BTreeMap<UnitOffset, Option<String>>,
) -> Option<String> {
    let mut offset = offset;
    for _ in 0..4 {
        let entry = unit.entry(offset).ok()?;
        if let Ok(Some(AttributeValue::UnitRef(t))) = entry.attr_value(gimli::DW_AT_type) {
            return behind
                .entry(t)
                .or_insert_with(|| struct_behind(unit, dwarf, t))
                .clone();
        }
        match (
            entry.attr_value(gimli::DW_AT_specification),
            entry.attr_value(gimli::DW_AT_abstract_origin),
        ) {
            (Ok(Some(AttributeValue::UnitRef(o))), _)
            | (_, Ok(Some(AttributeValue::UnitRef(o)))) => offset = o,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_sides_facts_are_those_of_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let source = r#"
            struct point { int x; long y; };
            struct point origin;
            static inline int bump(int x) { static int calls; calls++; return x + calls; }
            int counter(int x) { static int n; static struct point last; n += bump(x);
              last.x = n; return n + last.x; }
            int other(int x) { static int n; { static int inner; inner += x; n += inner; }
              return n + bump(x); }
            int unnamed_scope(int x) { return origin.x + x; }
        "#;
        std::fs::write(dir.path().join("t.c"), source).unwrap();
        let out = std::process::Command::new("gcc")
            .args(["-c", "-g", "-O2", "-ffunction-sections", "-fdata-sections"])
            .args(["t.c", "-o", "t.o"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "gcc: {out:?}");
        let path = dir.path().join("t.o");
        let bytes = std::fs::read(&path).unwrap();
        let parse = || Obj::parse(&path, &bytes).unwrap();
        let (mut whole_obj, mut old_obj) = (parse(), parse());
        let whole = read(&mut whole_obj, Wanted::All, false);
        let old = read(&mut old_obj, Wanted::OldSide, true);
        // The static locals are named by their function, also where the old side reads the
        // function's name only on finding one.
        let statics: BTreeSet<&str> = whole.statics.values().map(|s| s.as_str()).collect();
        for expected in [
            "counter::n",
            "other::n",
            "other::inner",
            "bump::calls",
            "::origin",
        ] {
            assert!(statics.contains(expected), "{expected} not in {statics:?}");
        }
        assert_eq!(old.statics, whole.statics);
        assert_eq!(old.layouts, whole.layouts);
        assert!(whole.layouts.contains_key("point"), "{:?}", whole.layouts);
        assert_eq!(old.cu_path, whole.cu_path);
        assert!(!old.lines.is_unread(), "lines asked for now were not read");
        let lines = whole.lines.all(&whole_obj);
        assert!(!lines.is_empty());
        assert_eq!(old.lines.all(&old_obj), lines);
        // What the old side does not read.
        assert!(old.decl.is_empty() && old.section_function.is_empty());
        assert!(!whole.decl.is_empty() && !whole.section_function.is_empty());
    }

    /// The layouts of a linked file as `linked_layouts` reads them, from its DWARF sections.
    fn layouts_of_file(path: &std::path::Path) -> BTreeMap<String, Vec<Layout>> {
        use object::{Object, ObjectSection};
        let bytes = std::fs::read(path).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        let sections = file
            .sections()
            .filter_map(|s| Some((s.name().ok()?.to_string(), s.uncompressed_data().ok()?)))
            .collect();
        linked_layouts(&sections)
    }

    #[test]
    fn linked_layouts_are_the_objects_also_after_dwz_moved_the_types_into_partial_units() {
        let dir = tempfile::tempdir().unwrap();
        let header = "struct pair { int a; long b; char c[3]; };\n\
                      struct holder { struct pair p; int n; };\n";
        std::fs::write(dir.path().join("t.h"), header).unwrap();
        for (name, body) in [
            (
                "a.c",
                "int fa(struct holder *h) { return h->p.a + h->n; }\n",
            ),
            (
                "b.c",
                "long fb(struct holder *h) { return h->p.b + h->p.c[1]; }\n",
            ),
        ] {
            let text = format!("#include \"t.h\"\n{body}");
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let gcc = std::process::Command::new("gcc")
            .args([
                "-g", "-O2", "-fPIC", "-shared", "a.c", "b.c", "-o", "libt.so",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(gcc.status.success(), "gcc: {gcc:?}");
        let lib = dir.path().join("libt.so");
        let before = layouts_of_file(&lib);
        let pair = &before["pair"];
        assert_eq!(pair.len(), 1, "{before:?}");
        assert_eq!(pair[0].0, 24, "{before:?}");
        assert_eq!(before["holder"][0].1[0], ("p".to_string(), 0, 24));
        // dwz (as Debian's dh_dwz runs it) shares the types of both units in a partial unit;
        // members then refer to their types across units.
        let dwz = std::process::Command::new("dwz")
            .arg(&lib)
            .output()
            .unwrap();
        assert!(dwz.status.success(), "dwz: {dwz:?}");
        assert_eq!(layouts_of_file(&lib), before);
    }
}
