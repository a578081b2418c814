-- Accounts, in the layout of the Kamailio/OpenSIPS `subscriber` table: never a clear-text
-- password, only HA1 = H(username:realm:password) for MD5 and SHA-256 Digest (RFC 7616).
CREATE TABLE subscriber (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    username    TEXT NOT NULL,
    domain      TEXT NOT NULL,
    ha1         TEXT NOT NULL,
    ha1_sha256  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (username, domain)
);
