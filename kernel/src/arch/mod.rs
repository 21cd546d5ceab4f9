//! Architecture-specific facts: registers, system call numbers, instruction encodings.

pub mod x86_64;

pub use self::x86_64 as current;
