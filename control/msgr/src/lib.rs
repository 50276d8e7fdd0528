//! kalmar-msgr (placeholder until its issue lands).
