//! Comparing one old/new object pair: which functions changed, which are new, which data is
//! new, and which changes cannot be live-patched.

use std::collections::{BTreeMap, BTreeSet};

use crate::dwarf::{self, Facts};
use crate::error::{refuse, Error};
use crate::identity::{strip_number, Analysis, Ref};
use crate::objfile::{Obj, SymKind};

/// One side of a pair, parsed and analysed.
#[derive(Debug)]
pub struct Side {
    pub obj: Obj,
    /// On the old side, only what `Wanted::OldSide` lists.
    pub facts: Facts,
    pub analysis: Analysis,
}

impl Side {
    /// `wanted`: the facts its role in the comparison asks for. `lines_now`: read the line
    /// programs now, at the same time as the DIEs (for a core that would be idle otherwise),
    /// rather than when a function first needs them.
    pub fn new(mut obj: Obj, wanted: dwarf::Wanted, lines_now: bool) -> Side {
        let facts = dwarf::read(&mut obj, wanted, lines_now);
        // Everything the build needs from DWARF is in `facts` (which took `.debug_line` for
        // the line numbers it reads when asked): the rest of the bytes go now rather than when
        // the build ends.
        obj.debug = Default::default();
        let analysis = Analysis::new(&obj, &facts);
        Side {
            obj,
            facts,
            analysis,
        }
    }

    fn function_form(&self, name: &str) -> Option<(Vec<u8>, Vec<String>)> {
        let &i = self.analysis.functions.get(name)?;
        let s = &self.obj.symbols[i];
        Some(self.analysis.form(&self.obj, s.section?, s.value, s.size))
    }

    /// A function's bytes when no relocation applies to them (nothing to describe).
    fn plain_code(&self, symbol: usize) -> Option<&[u8]> {
        let s = &self.obj.symbols[symbol];
        let section = &self.obj.sections[s.section?];
        let end = s.value.saturating_add(s.size);
        let first = section.relocs.partition_point(|r| r.offset < s.value);
        let relocated = section.relocs.get(first).is_some_and(|r| r.offset < end);
        if section.nobits() || relocated {
            return None;
        }
        let end = usize::try_from(end).map_or(section.data.len(), |e| e.min(section.data.len()));
        Some(&section.data[usize::try_from(s.value).map_or(end, |v| v.min(end))..end])
    }

    fn function_section(&self, name: &str) -> Option<usize> {
        self.analysis
            .functions
            .get(name)
            .and_then(|&i| self.obj.symbols[i].section)
    }

    /// Source function a symbol's code belongs to (clones and cold parts map to their origin).
    pub fn source_function(&self, name: &str) -> String {
        self.function_section(name)
            .and_then(|sec| self.facts.section_function.get(&sec))
            .map(|name| name.to_string())
            .unwrap_or_else(|| clone_base(name).to_string())
    }

    /// `file.c:LINE` of a function, from DWARF.
    pub fn source(&self, name: &str) -> Option<String> {
        let function = self.source_function(name);
        self.facts
            .decl
            .get(function.as_str())
            .map(|d| d.to_string())
    }

    /// Struct/union types of the data objects function `name` refers to.
    fn data_types_used_by(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(sec) = self.function_section(name) else {
            return out;
        };
        let section = &self.obj.sections[sec];
        for rel in &section.relocs {
            if let Ref::Data { sym, .. } =
                self.analysis
                    .resolve(&self.obj, rel, Some(&section.instructions))
            {
                let s = &self.obj.symbols[sym];
                if let Some(ty) = s
                    .section
                    .and_then(|x| self.facts.var_types.get(&(x, s.value)))
                {
                    out.insert(ty.clone());
                }
            }
        }
        out
    }

    /// Function symbols referenced by the relocations of function `name` (symbol `symbol`).
    fn callees(&self, name: &str, symbol: usize) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        // By symbol rather than by name: no name lookup per function.
        let Some(sec) = self.obj.symbols[symbol].section else {
            return out;
        };
        let section = &self.obj.sections[sec];
        for rel in &section.relocs {
            if let Ref::Func { name: callee, .. } =
                self.analysis
                    .resolve(&self.obj, rel, Some(&section.instructions))
            {
                if callee != name {
                    out.insert(callee);
                }
            }
        }
        out
    }
}

/// `foo.isra.0.cold` -> `foo`.
pub fn clone_base(name: &str) -> &str {
    [".part.", ".isra.", ".constprop.", ".cold", ".lto_priv."]
        .iter()
        .filter_map(|m| name.find(m))
        .min()
        .map_or(name, |i| &name[..i])
}

/// A cold part (`foo.cold`) is entered only by jumps from its parent, at several offsets:
/// it is never replaced in place, always carried with its parent.
pub fn is_cold(name: &str) -> bool {
    name.ends_with(".cold") || name.contains(".cold.")
}

fn is_clone(name: &str) -> bool {
    clone_base(name) != name && !is_cold(name)
}

/// How a function of the new object is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exists in the target; patched with a jump.
    Replace(Reason),
    /// Only in the module.
    New(Reason),
}

impl Verdict {
    pub fn reason(&self) -> &Reason {
        match self {
            Verdict::Replace(r) | Verdict::New(r) => r,
        }
    }
}

/// Why a function is in the package; its text is the manifest's `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Its code differs.
    ChangedBytes,
    /// Its code is the same but a relocation differs (shown as `name+offset`).
    ChangedRelocation(String),
    /// Only line numbers differ, and line changes are allowed.
    LineNumbersChanged,
    /// A function inlined into it changed.
    InlinedCalleeChanged(String),
    /// A clone or cold part it calls changed.
    ChangedClone(String),
    /// A clone (`.constprop`, `.isra`...) of a function that changed.
    CloneOfChanged(String),
    /// It moved to another object of the build (the named one).
    MovedFrom(String),
    /// The old object does not have it.
    NewFunction,
    /// An init or exit routine.
    Routine(&'static str),
    /// The cold part of the named function, which it travels with.
    ColdPartOf(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::ChangedBytes => write!(f, "changed bytes"),
            Reason::ChangedRelocation(what) => write!(f, "changed relocation: {what}"),
            Reason::LineNumbersChanged => write!(f, "line numbers changed"),
            Reason::InlinedCalleeChanged(callee) => write!(f, "inlined callee changed: {callee}"),
            Reason::ChangedClone(clone) => write!(f, "changed clone: {clone}"),
            Reason::CloneOfChanged(origin) => write!(f, "clone of changed {origin}"),
            Reason::MovedFrom(origin) => write!(f, "moved from {origin}"),
            Reason::NewFunction => write!(f, "new function"),
            Reason::Routine(kind) => write!(f, "{kind} routine"),
            Reason::ColdPartOf(parent) => write!(f, "cold part of {parent}"),
        }
    }
}

/// The outcome of comparing one pair.
#[derive(Debug)]
pub struct PairDiff {
    /// Included functions of the new object by name.
    pub functions: BTreeMap<String, Verdict>,
    /// New data symbols (indices in the new object) carried in the module.
    pub new_data: Vec<usize>,
    /// Check, init and exit routines (function names in the new object).
    pub checks: Vec<String>,
    pub inits: Vec<String>,
    pub exits: Vec<String>,
    pub notes: Vec<String>,
}

/// Compares one pair. `old` is an empty object when the file is new.
/// `old_globals` names the global data objects of every old object of the build (data that
/// moved between files is not new).
pub fn compare(
    old: &Side,
    new: &Side,
    allow_line_changes: bool,
    old_globals: &BTreeSet<String>,
) -> Result<PairDiff, Error> {
    let mut notes = Vec::new();
    let (mut functions, changed_bytes) =
        function_verdicts(old, new, allow_line_changes, &mut notes);
    explain_inlining(new, &mut functions, &changed_bytes);
    propagate_clones(new, &mut functions);
    let [checks, inits, exits] = routines(new, &mut functions)?;
    // Cold parts are carried, never replaced in place.
    for (name, verdict) in functions.iter_mut() {
        if is_cold(name) {
            if let Verdict::Replace(_) = verdict {
                *verdict = Verdict::New(Reason::ColdPartOf(clone_base(name).to_owned()));
            }
        }
    }
    let new_data = check_data(old, new, old_globals)?;
    if !functions.is_empty() {
        check_structure(old, new, &functions)?;
    }
    Ok(PairDiff {
        functions,
        new_data,
        checks,
        inits,
        exits,
        notes,
    })
}

/// The verdict on each function of the new object that is new or differs from the old one,
/// and the names of those whose bytes (not only relocations) differ.
fn function_verdicts(
    old: &Side,
    new: &Side,
    allow_line_changes: bool,
    notes: &mut Vec<String>,
) -> (BTreeMap<String, Verdict>, BTreeSet<String>) {
    let mut functions: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut changed_bytes: BTreeSet<String> = BTreeSet::new();
    // Both maps are sorted by name: the old function of each new one is found by walking
    // along, not by a lookup per function.
    let mut olds = old.analysis.functions.iter().peekable();
    for (name, &new_symbol) in &new.analysis.functions {
        while olds.next_if(|(o, _)| *o < name).is_some() {}
        let old_symbol = olds.next_if(|(o, _)| *o == name).map(|(_, &i)| i);
        // A helper the compiler emits identically in every object that uses it is never a
        // change: new code calls the target's copy (checked byte for byte) or carries one.
        if new.obj.arch.is_shared_helper(name) {
            continue;
        }
        // Same bytes and no relocation on either side: the forms are equal, without building
        // them.
        if let Some(old_symbol) = old_symbol {
            if let (Some(a), Some(b)) = (old.plain_code(old_symbol), new.plain_code(new_symbol)) {
                if a == b {
                    continue;
                }
            }
        }
        let Some(old_form) = old.function_form(name) else {
            functions.insert(name.clone(), Verdict::New(Reason::NewFunction));
            continue;
        };
        let new_form = new.function_form(name).unwrap_or_default();
        if old_form == new_form {
            continue;
        }
        if old_form.1 == new_form.1 {
            if let Some(pairs) = new
                .obj
                .arch
                .immediate_only_differences(&old_form.0, &new_form.0)
            {
                if !pairs.is_empty() && line_shift_only(old, new, name, &pairs) {
                    line_change(new, name, &pairs, allow_line_changes, &mut functions, notes);
                    continue;
                }
            }
            changed_bytes.insert(name.clone());
            functions.insert(name.clone(), Verdict::Replace(Reason::ChangedBytes));
        } else if old_form.0 != new_form.0 {
            changed_bytes.insert(name.clone());
            functions.insert(name.clone(), Verdict::Replace(Reason::ChangedBytes));
        } else {
            let what = new_form
                .1
                .iter()
                .find(|r| !old_form.1.contains(r))
                .or_else(|| old_form.1.iter().find(|r| !new_form.1.contains(r)))
                .cloned()
                .unwrap_or_default();
            functions.insert(
                name.clone(),
                Verdict::Replace(Reason::ChangedRelocation(what)),
            );
        }
    }
    (functions, changed_bytes)
}

/// A function whose only differences are line numbers (`pairs`, old to new): replaced only
/// when line changes are allowed; a note either way.
fn line_change(
    new: &Side,
    name: &str,
    pairs: &[(u64, u64)],
    allow_line_changes: bool,
    functions: &mut BTreeMap<String, Verdict>,
    notes: &mut Vec<String>,
) {
    let shown: Vec<String> = pairs.iter().map(|(a, b)| format!("{a}->{b}")).collect();
    let source = new.source(name).unwrap_or_default();
    if allow_line_changes {
        notes.push(format!(
            "{name} ({source}): only line numbers changed ({}); included because line changes are allowed",
            shown.join(", ")
        ));
        functions.insert(
            name.to_owned(),
            Verdict::Replace(Reason::LineNumbersChanged),
        );
    } else {
        notes.push(format!(
            "{name} ({source}): only line numbers changed ({}); not patched (allow line changes to include it)",
            shown.join(", ")
        ));
    }
}

/// The check, init and exit routines of the new object (its `.lpkg.check`, `.lpkg.init` and
/// `.lpkg.exit` markers), each made a new function of its kind unless it is a replaced one.
fn routines(
    new: &Side,
    functions: &mut BTreeMap<String, Verdict>,
) -> Result<[Vec<String>; 3], Error> {
    let [mut checks, mut inits, mut exits] = [Vec::new(), Vec::new(), Vec::new()];
    for sec in &new.obj.sections {
        let (list, kind) = match sec.name.as_str() {
            ".lpkg.check" => (&mut checks, "check"),
            ".lpkg.init" => (&mut inits, "init"),
            ".lpkg.exit" => (&mut exits, "exit"),
            _ => continue,
        };
        for rel in &sec.relocs {
            match new.analysis.resolve(&new.obj, rel, None) {
                Ref::Func { name, .. } => {
                    let routine = Verdict::New(Reason::Routine(kind));
                    match functions.get(&name) {
                        None => {
                            functions.insert(name.clone(), routine);
                        }
                        Some(Verdict::New(Reason::NewFunction)) => {
                            functions.insert(name.clone(), routine);
                        }
                        Some(_) => {}
                    }
                    list.push(name);
                }
                other => {
                    return Err(refuse(
                        sec.name.clone(),
                        format!(
                            "routine marker does not point at a function of this object ({other:?})"
                        ),
                    ))
                }
            }
        }
    }
    Ok([checks, inits, exits])
}

/// Differing immediates are all line numbers of the function, shifted consistently: the k-th
/// line with code in the old function maps to the k-th in the new one, counted within one
/// source file (code inlined from a header keeps its lines while the including file's move).
fn line_shift_only(old: &Side, new: &Side, name: &str, pairs: &[(u64, u64)]) -> bool {
    let lines = |side: &Side| -> BTreeMap<u64, Vec<u64>> {
        let mut by_file: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let rows = side
            .function_section(name)
            .map(|s| side.facts.lines.of(&side.obj, s));
        for (file, line) in rows.unwrap_or_default() {
            by_file.entry(file).or_default().push(line);
        }
        by_file
    };
    // Both sides' programs are read whole on the first call: at the same time, on two cores
    // (a thread is cheap next to a large object's programs).
    if old.facts.lines.is_unread() || new.facts.lines.is_unread() {
        std::thread::scope(|scope| {
            scope.spawn(|| old.facts.lines.all(&old.obj));
            new.facts.lines.all(&new.obj);
        });
    }
    let (old_lines, new_lines) = (lines(old), lines(new));
    let same_shape = old_lines.len() == new_lines.len()
        && old_lines
            .iter()
            .zip(&new_lines)
            .all(|((a, a_lines), (b, b_lines))| a == b && a_lines.len() == b_lines.len());
    if !same_shape || old_lines.is_empty() {
        return false;
    }
    pairs.iter().all(|&(o, n)| {
        o != n
            && old_lines.iter().any(|(file, old_file_lines)| {
                let new_file_lines = &new_lines[file];
                matches!(
                    (old_file_lines.binary_search(&o), new_file_lines.binary_search(&n)),
                    (Ok(a), Ok(b)) if a == b
                )
            })
    })
}

/// Names the inlined callee behind a caller's change, when DWARF tells. A callee counts as
/// changed when its own out-of-line copy changed, or when it is inlined into several functions
/// and all of them changed (its body is then the likely common cause). This is a heuristic: the
/// builder never sees source text.
fn explain_inlining(
    new: &Side,
    functions: &mut BTreeMap<String, Verdict>,
    changed_bytes: &BTreeSet<String>,
) {
    let mut inliners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, &i) in &new.analysis.functions {
        if let Some(sec) = new.obj.symbols[i].section {
            for callee in new.facts.inlined.get(&sec).into_iter().flatten() {
                inliners
                    .entry(callee.clone())
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
    let suspects: BTreeSet<String> = inliners
        .iter()
        .filter(|(callee, users)| {
            changed_bytes.contains(*callee)
                || (users.len() > 1 && users.iter().all(|u| changed_bytes.contains(u)))
        })
        .map(|(c, _)| c.clone())
        .collect();
    for name in changed_bytes {
        let Some(sec) = new.function_section(name) else {
            continue;
        };
        let callee = new
            .facts
            .inlined
            .get(&sec)
            .into_iter()
            .flatten()
            .find(|c| suspects.contains(*c) && *c != name);
        if let (Some(callee), Some(Verdict::Replace(reason))) = (callee, functions.get_mut(name)) {
            *reason = Reason::InlinedCalleeChanged(callee.clone());
        }
    }
}

/// A changed clone or cold part marks every function that uses it (its parent): the parent
/// may call it with a different convention, or jump into it at different offsets. A cold part
/// always travels with an included parent.
fn propagate_clones(new: &Side, functions: &mut BTreeMap<String, Verdict>) {
    loop {
        let mut added = Vec::new();
        for (name, &symbol) in &new.analysis.functions {
            let callees = new.callees(name, symbol);
            if functions.contains_key(name) {
                for c in callees.iter().filter(|c| is_cold(c)) {
                    if !functions.contains_key(c) && new.analysis.functions.contains_key(c) {
                        added.push((c.clone(), Verdict::New(Reason::ColdPartOf(name.clone()))));
                    }
                }
                continue;
            }
            if let Some(c) = callees
                .iter()
                .find(|c| (is_clone(c) || is_cold(c)) && functions.contains_key(*c))
            {
                added.push((
                    name.clone(),
                    Verdict::Replace(Reason::ChangedClone(c.clone())),
                ));
            }
        }
        if added.is_empty() {
            break;
        }
        for (n, v) in added {
            functions.entry(n).or_insert(v);
        }
    }
    // A changed clone whose origin also changed says so.
    let snapshot = functions.clone();
    for (name, verdict) in functions.iter_mut() {
        if is_clone(name) && snapshot.contains_key(clone_base(name)) {
            if let Verdict::Replace(reason) = verdict {
                if *reason == Reason::ChangedBytes {
                    *reason = Reason::CloneOfChanged(clone_base(name).to_owned());
                }
            }
        }
    }
}

/// Existing data must keep its size and initial value; new TLS cannot be added.
/// Returns the new data symbols to carry.
fn check_data(old: &Side, new: &Side, old_globals: &BTreeSet<String>) -> Result<Vec<usize>, Error> {
    let old_by_key: BTreeMap<&String, usize> = old
        .analysis
        .data_keys
        .iter()
        .map(|(s, k)| (k, *s))
        .collect();
    let mut new_data = Vec::new();
    for (&sym, key) in &new.analysis.data_keys {
        let s = &new.obj.symbols[sym];
        let Some(&o) = old_by_key.get(key) else {
            if !s.local && old_globals.contains(&s.name) {
                // Moved from another file: the target's copy stays in use.
                continue;
            }
            // Without DWARF, a renumbered static local (`n.0` -> `n.1`) would silently become a
            // fresh variable and lose the running process's state.
            let base = strip_number(&s.name);
            let ambiguous_static = key.starts_with("l:")
                && base != s.name
                && old.obj.symbols.iter().any(|o| {
                    o.local
                        && matches!(o.kind, SymKind::Object | SymKind::Tls)
                        && strip_number(&o.name) == base
                });
            if ambiguous_static {
                return Err(refuse(
                    s.name.clone(),
                    "cannot tell which old static variable this is without DWARF (compile with -g)",
                ));
            }
            if s.kind == SymKind::Tls || new.obj.sections[s.section.unwrap_or(0)].tls() {
                return Err(refuse(
                    s.name.clone(),
                    "new thread-local variable; TLS cannot be added to a running process",
                ));
            }
            let sec = s.section.unwrap_or(0);
            if new.obj.named_in(sec).len() > 1 {
                return Err(refuse(
                    s.name.clone(),
                    format!(
                        "new data shares section {} with other objects; compile with -fdata-sections",
                        new.obj.sections[sec].name
                    ),
                ));
            }
            new_data.push(sym);
            continue;
        };
        let os = &old.obj.symbols[o];
        if os.size != s.size {
            return Err(refuse(
                s.name.clone(),
                format!(
                    "size of existing data changed ({} -> {} bytes); migrate state with an init routine instead",
                    os.size, s.size
                ),
            ));
        }
        let old_form = old
            .analysis
            .form(&old.obj, os.section.unwrap_or(0), os.value, os.size);
        let new_form = new
            .analysis
            .form(&new.obj, s.section.unwrap_or(0), s.value, s.size);
        if old_form != new_form {
            return Err(refuse(
                s.name.clone(),
                "initial value of existing data changed; the running process keeps the old value (use an init routine to migrate it)",
            ));
        }
    }
    Ok(new_data)
}

/// The struct/union types function `name` of the new side uses: through its parameters,
/// locals and inlined code, and through the data objects it refers to.
pub fn types_used(new: &Side, name: &str) -> BTreeSet<String> {
    let mut types = new.facts.types_used_by(&new.source_function(name));
    types.extend(new.data_types_used_by(name));
    types
}

/// Refuses changes the module cannot carry: COMDAT members, changed struct layouts used by an
/// included function, and objects without -ffunction-sections.
fn check_structure(
    old: &Side,
    new: &Side,
    functions: &BTreeMap<String, Verdict>,
) -> Result<(), Error> {
    for side in [old, new] {
        for sec in side.obj.sections.iter().filter(|s| s.exec()) {
            let mut starts = sec
                .named
                .iter()
                .map(|&i| &side.obj.symbols[i])
                .filter(|s| s.kind == SymKind::Func)
                .map(|s| s.value);
            // Aliases share an address; distinct functions do not.
            let first = starts.next();
            if starts.any(|v| Some(v) != first) {
                let funcs: Vec<&str> = sec
                    .named
                    .iter()
                    .map(|&i| &side.obj.symbols[i])
                    .filter(|s| s.kind == SymKind::Func)
                    .map(|s| s.name.as_str())
                    .collect();
                return Err(Error::MultiFunctionText {
                    path: side.obj.path.clone(),
                    section: sec.name.clone(),
                    functions: funcs.join(", "),
                });
            }
        }
    }
    // New functions see the target's data too, so layouts matter for every verdict.
    for (name, verdict) in functions {
        // A COMDAT function new to this object (an inline function or template instance the
        // fix starts using, as libc++'s inline exception constructors) travels in the module
        // as any new function; a changed one would also be changed in every other object
        // that has a copy, which the package cannot know.
        let changed = matches!(verdict, Verdict::Replace(_));
        if let Some(sec) = new.function_section(name).filter(|_| changed) {
            if new.obj.sections[sec].comdat {
                return Err(refuse(
                    name.clone(),
                    "function is in a COMDAT group (C++ inline or template); changed COMDAT groups are not supported",
                ));
            }
        }
        for ty in types_used(new, name) {
            if let (Some(a), Some(b)) = (old.facts.layouts.get(&ty), new.facts.layouts.get(&ty)) {
                if a != b {
                    return Err(refuse(
                        format!("struct {ty}"),
                        format!(
                            "layout changed (member offsets or sizes) and it is used by changed function {name}; keep the layout, or migrate state with an init routine into new data"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
