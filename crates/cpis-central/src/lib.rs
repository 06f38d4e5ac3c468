//! CP-IS Field central service.
