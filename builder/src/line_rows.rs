//! The rows of a DWARF line program, reduced to what the builder asks of them: address, file
//! and line. gimli's row reader keeps the whole row state (file, column, flags, discriminator) and
//! goes through a general instruction type per opcode: on a 10 000-function object that was a
//! tenth of the build, on its critical path. This reader follows gimli's semantics for address
//! and line (tombstoned sequences, address overflow, line underflow) on the one layout x86_64
//! uses, one operation per instruction; gimli still parses the program's header.

use gimli::{EndianSlice, LittleEndian};

/// The program cannot be read further (rows before the fault were given out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Calls `row(address, file, line)` for each row of the program in order, except
/// end-of-sequence rows and rows of a sequence whose address is a tombstone (as gimli's
/// `LineRows` leaves them out). `file` is the index in the header's file table; `line` is 0
/// for code without a line.
pub fn for_each_row(
    header: &gimli::LineProgramHeader<EndianSlice<'_, LittleEndian>>,
    mut row: impl FnMut(u64, u64, u64),
) -> Result<(), Malformed> {
    if header.maximum_operations_per_instruction() != 1 || header.line_range() == 0 {
        // VLIW operation indices: no x86 compiler emits them.
        return Err(Malformed);
    }
    let min_length = u64::from(header.minimum_instruction_length());
    let line_base = i64::from(header.line_base());
    let line_range = header.line_range();
    let opcode_base = header.opcode_base();
    let address_size = header.address_size();
    if !matches!(address_size, 1 | 2 | 4 | 8) {
        return Err(Malformed);
    }
    let address_mask = !0u64 >> (64 - u32::from(address_size) * 8);
    let lengths = header.standard_opcode_lengths().slice();
    let mut input = Input(header.raw_program_buf().slice());
    let mut state = State::default();
    while let Some(opcode) = input.byte() {
        if opcode >= opcode_base {
            let adjusted = opcode - opcode_base;
            state.advance_line(line_base + i64::from(adjusted % line_range));
            let advance = min_length.wrapping_mul(u64::from(adjusted / line_range));
            state.advance_address(advance, address_mask)?;
            state.emit(&mut row);
            continue;
        }
        match opcode {
            0 => {
                let length = usize::try_from(input.uleb()?).map_err(|_| Malformed)?;
                let mut rest = Input(input.take(length)?);
                match rest.byte().ok_or(Malformed)? {
                    // DW_LNE_end_sequence
                    1 => state = State::default(),
                    // DW_LNE_set_address
                    2 => {
                        let bytes = rest.take(usize::from(address_size))?;
                        let mut le = [0u8; 8];
                        le[..bytes.len()].copy_from_slice(bytes);
                        state.set_address(u64::from_le_bytes(le), address_mask);
                    }
                    // A file definition and a discriminator have no address or line, but
                    // their operands must fit in the instruction, as gimli checks: a program
                    // one reader stops in, the other does too.
                    // (DW_LNE_define_file is DWARF 4 and before: in DWARF 5 an unknown
                    // opcode, skipped.)
                    3 if header.version() <= 4 => {
                        rest.string()?;
                        for _ in 0..3 {
                            rest.uleb()?;
                        }
                    }
                    4 => {
                        rest.uleb()?;
                    }
                    _ => {}
                }
            }
            // The standard opcodes (DWARF 5, 6.2.5.2), by number.
            // DW_LNS_copy
            1 => state.emit(&mut row),
            // DW_LNS_advance_pc
            2 => {
                let advance = min_length.wrapping_mul(input.uleb()?);
                state.advance_address(advance, address_mask)?;
            }
            // DW_LNS_advance_line
            3 => state.advance_line(input.sleb()?),
            // DW_LNS_set_file
            4 => state.file = input.uleb()?,
            // Set column, ISA: one operand, none about addresses or lines.
            5 | 12 => {
                input.uleb()?;
            }
            // Statement, basic block, prologue and epilogue flags.
            6 | 7 | 10 | 11 => {}
            // DW_LNS_const_add_pc
            8 => {
                let advance = min_length.wrapping_mul(u64::from((255 - opcode_base) / line_range));
                state.advance_address(advance, address_mask)?;
            }
            // DW_LNS_fixed_advance_pc
            9 => {
                let bytes = input.take(2)?;
                let advance = u64::from(u16::from_le_bytes([bytes[0], bytes[1]]));
                state.advance_address(advance, address_mask)?;
            }
            _ => {
                // An opcode this reader does not know: skip its operands as the header says.
                let count = *lengths.get(usize::from(opcode) - 1).ok_or(Malformed)?;
                for _ in 0..count {
                    input.uleb()?;
                }
            }
        }
    }
    Ok(())
}

/// The part of the row state that addresses and lines depend on.
struct State {
    address: u64,
    line: u64,
    file: u64,
    /// The sequence's address is a tombstone (code the linker dropped): no rows from it.
    tombstone: bool,
}

impl Default for State {
    fn default() -> State {
        State {
            address: 0,
            line: 1,
            file: 1,
            tombstone: false,
        }
    }
}

impl State {
    fn emit(&self, row: &mut impl FnMut(u64, u64, u64)) {
        if !self.tombstone {
            row(self.address, self.file, self.line);
        }
    }

    fn advance_line(&mut self, increment: i64) {
        self.line = if increment < 0 {
            self.line.saturating_sub(increment.unsigned_abs())
        } else {
            self.line.wrapping_add(increment as u64)
        };
    }

    fn advance_address(&mut self, advance: u64, mask: u64) -> Result<(), Malformed> {
        if self.tombstone {
            return Ok(());
        }
        match self.address.checked_add(advance) {
            Some(address) if address & !mask == 0 => {
                self.address = address;
                Ok(())
            }
            _ => Err(Malformed),
        }
    }

    fn set_address(&mut self, address: u64, mask: u64) {
        // As gimli: DWARF's tombstone is all ones, linkers also use 0 (or keep the addend), so
        // an address going backwards counts as one too.
        self.tombstone = address < self.address || address == mask;
        if !self.tombstone {
            self.address = address;
        }
    }
}

/// The instructions not read yet.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed);
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    /// A NUL-terminated string, without its NUL.
    fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let end = self.0.iter().position(|&b| b == 0).ok_or(Malformed)?;
        let string = self.take(end)?;
        self.take(1)?;
        Ok(string)
    }

    fn uleb(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.byte().ok_or(Malformed)?;
            if shift == 63 && byte > 1 {
                return Err(Malformed);
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(Malformed);
            }
        }
    }

    fn sleb(&mut self) -> Result<i64, Malformed> {
        let mut value = 0i64;
        let mut shift = 0;
        loop {
            let byte = self.byte().ok_or(Malformed)?;
            if shift == 63 && byte != 0 && byte != 0x7f {
                return Err(Malformed);
            }
            value |= i64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= !0 << shift;
                }
                return Ok(value);
            }
            if shift > 63 {
                return Err(Malformed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (u64, u64, u64);

    /// The rows as gimli's reader gives them, and whether it read the programs to their end.
    fn gimli_rows(debug_line: &[u8], programs: &[gimli::DebugLineOffset]) -> (Vec<Row>, bool) {
        let debug_line = gimli::DebugLine::new(debug_line, LittleEndian);
        let mut out = Vec::new();
        for &offset in programs {
            let program = debug_line.program(offset, 8, None, None).unwrap();
            let mut rows = program.rows();
            loop {
                match rows.next_row() {
                    Ok(Some((_, row))) if row.end_sequence() => {}
                    Ok(Some((_, row))) => out.push((
                        row.address(),
                        row.file_index(),
                        row.line().map_or(0, |l| l.get()),
                    )),
                    Ok(None) => break,
                    Err(_) => return (out, false),
                }
            }
        }
        (out, true)
    }

    fn our_rows(debug_line: &[u8], programs: &[gimli::DebugLineOffset]) -> (Vec<Row>, bool) {
        let debug_line = gimli::DebugLine::new(debug_line, LittleEndian);
        let mut out = Vec::new();
        for &offset in programs {
            let program = debug_line.program(offset, 8, None, None).unwrap();
            if for_each_row(program.header(), |a, f, l| out.push((a, f, l))).is_err() {
                return (out, false);
            }
        }
        (out, true)
    }

    /// `(offset of each program, .debug_line)` of an ELF file, relocated when it is an object.
    fn line_programs(path: &std::path::Path) -> (Vec<gimli::DebugLineOffset>, Vec<u8>) {
        let bytes = std::fs::read(path).unwrap();
        let obj = crate::objfile::Obj::parse(path, &bytes).ok();
        let file = object::File::parse(&bytes[..]).unwrap();
        let debug_line = match &obj {
            Some(obj) => obj.debug[".debug_line"].clone(),
            None => {
                use object::{Object, ObjectSection};
                let section = file.section_by_name(".debug_line").unwrap();
                section.uncompressed_data().unwrap().into_owned()
            }
        };
        // The programs follow each other in the section.
        let mut programs = Vec::new();
        let mut at = 0usize;
        while at + 4 <= debug_line.len() {
            programs.push(gimli::DebugLineOffset(at));
            let length = u32::from_le_bytes(debug_line[at..at + 4].try_into().unwrap());
            at += 4 + length as usize;
        }
        (programs, debug_line)
    }

    #[test]
    fn rows_are_gimlis_on_objects_and_executables_whole_or_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let source = r#"
            static inline int sq(int x) { return x * x; }
            int a(int x) { int s = 0;
              for (int i = 0; i < x; i++)
                s += sq(i) ^ i;
              return s; }
            int b(int x) { if (x > 3)
                return a(x) + 1;
              return __LINE__; }
            int main(int argc, char **argv) { (void)argv;
              return a(argc) + b(argc); }
        "#;
        std::fs::write(dir.path().join("t.c"), source).unwrap();
        for args in [
            &["-c", "-g", "-O2", "-ffunction-sections", "t.c", "-o", "t.o"][..],
            &["-g", "-O0", "t.c", "-o", "t0"][..],
            &["-g", "-O2", "t.c", "-o", "t2"][..],
            &[
                "-c",
                "-gdwarf-4",
                "-O2",
                "-ffunction-sections",
                "t.c",
                "-o",
                "t4.o",
            ][..],
        ] {
            let out = std::process::Command::new("gcc")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "gcc {args:?}: {out:?}");
            let path = dir.path().join(args[args.len() - 1]);
            let (programs, debug_line) = line_programs(&path);
            let (theirs, whole) = gimli_rows(&debug_line, &programs);
            assert!(whole && theirs.len() > 5, "{path:?}: {theirs:?}");
            assert_eq!(our_rows(&debug_line, &programs), (theirs, true), "{path:?}");
            // Cut inside its last instruction (an end of sequence): both stop at the same row, with
            // an error.
            let mut cut = debug_line.clone();
            cut.truncate(debug_line.len() - 1);
            let last = programs[programs.len() - 1].0;
            let length = (cut.len() - last - 4) as u32;
            cut[last..last + 4].copy_from_slice(&length.to_le_bytes());
            let (theirs, whole) = gimli_rows(&cut, &programs);
            assert!(!whole, "{path:?}: a cut program reads whole");
            assert_eq!(our_rows(&cut, &programs), (theirs, false), "{path:?} cut");
        }
    }

    /// Damaged programs (bytes flipped anywhere after the headers gimli accepts): never a
    /// panic, and the rows and the verdict are gimli's.
    #[test]
    fn damaged_programs_read_as_gimli_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.c"),
            "int a(int x) { int s = 0; for (int i = 0; i < x; i++)\n s += i * i;\n return s; }\n\
             int b(int x) { if (x > 3)\n return a(x) + 1;\n return 7; }\n",
        )
        .unwrap();
        for dwarf in ["-gdwarf-5", "-gdwarf-4"] {
            let out = std::process::Command::new("gcc")
                .args([
                    "-c",
                    dwarf,
                    "-O2",
                    "-ffunction-sections",
                    "t.c",
                    "-o",
                    "t.o",
                ])
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let (programs, debug_line) = line_programs(&dir.path().join("t.o"));
            damage_and_compare(&programs, &debug_line, dwarf);
        }
    }

    fn damage_and_compare(programs: &[gimli::DebugLineOffset], debug_line: &[u8], what: &str) {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut compared = 0;
        for _ in 0..5000 {
            let mut damaged = debug_line.to_vec();
            for _ in 0..1 + seed % 4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed >> 8) as usize % damaged.len();
                damaged[at] = (seed >> 32) as u8;
            }
            let sections = gimli::DebugLine::new(&damaged[..], LittleEndian);
            // Headers this reader refuses outright (VLIW operation indices, no line range)
            // leave the builder without lines, where gimli would read some: not compared.
            let headers_read = programs.iter().all(|&offset| {
                sections.program(offset, 8, None, None).is_ok_and(|p| {
                    let header = p.header();
                    header.maximum_operations_per_instruction() == 1 && header.line_range() != 0
                })
            });
            if headers_read {
                assert_eq!(
                    our_rows(&damaged, programs),
                    gimli_rows(&damaged, programs),
                    "{what}"
                );
                compared += 1;
            }
        }
        assert!(
            compared > 1000,
            "{what}: only {compared} damaged programs compared"
        );
    }
}
