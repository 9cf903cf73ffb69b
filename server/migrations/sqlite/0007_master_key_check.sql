-- A value encrypted under the master key by the first registrar that used
-- the database. Every later start, of this or another replica, decrypts it
-- first, so a registrar with another master key refuses to start before it
-- stores a key that the others cannot decrypt.
CREATE TABLE master_key_check (
    -- At most one row.
    id     INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    -- Nonce and ciphertext of a fixed text, with a fixed associated data.
    sealed BLOB NOT NULL
);
