//! Content signatures. For now the built-in GTUBE test; rule files come with the content stage.

pub mod gtube;
