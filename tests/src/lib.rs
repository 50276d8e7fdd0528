//! kalmar-tests (placeholder until its issue lands).
