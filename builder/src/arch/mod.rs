//! Architecture-specific knowledge; x86_64 is the only architecture so far.

pub mod x86_64;
