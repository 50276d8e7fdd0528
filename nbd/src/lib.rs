//! kalmar-nbd (placeholder until its issue lands).
