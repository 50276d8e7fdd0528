//! kalmar-mgr-py (placeholder until its issue lands).
