//! kalmar-maps (placeholder until its issue lands).
