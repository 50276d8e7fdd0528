//! kalmar-objectstore (placeholder until its issue lands).
