//! kalmar-osd (placeholder until its issue lands).
