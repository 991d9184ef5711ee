//! Typed digest authentication headers (being written).
