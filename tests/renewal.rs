//! Renewal.
