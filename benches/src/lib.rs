//! kalmar-benches (placeholder until its issue lands).
