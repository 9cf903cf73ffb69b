//! Client SDK for registrar.
