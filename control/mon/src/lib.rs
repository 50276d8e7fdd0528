//! kalmar-mon (placeholder until its issue lands).
