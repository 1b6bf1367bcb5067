//! Table-driven tests for validation, asserting upstream's exact messages.
