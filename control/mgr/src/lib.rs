//! kalmar-mgr (placeholder until its issue lands).
