//! The registrar service.
