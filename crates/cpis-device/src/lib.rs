//! CP-IS Field device engine.
