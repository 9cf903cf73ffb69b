//! An in-memory emulator of the Okta endpoints that registrar uses.
