//! Tests for defaulting.
