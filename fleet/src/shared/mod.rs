//! The state a fleet of processes shares through Redis (budget leases, guardrail counts,
//! metrics, sticky pins, the fallback when Redis is down or slow).
//!
//! Owned by the fleet-state work; keys come from [`crate::KeySpace`] so they share the hash
//! tag of their document.
