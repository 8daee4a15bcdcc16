//! shadowlink daemon library.
