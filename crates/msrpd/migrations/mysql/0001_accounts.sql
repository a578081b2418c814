-- msrpd's own accounts (schema = "msrpd"): never a clear-text password, only
-- HA1 = H(username:realm:password) for MD5 and SHA-256 Digest (RFC 7616). Prefixed, so that
-- it can share a database with a SIP proxy's own `subscriber` table.
CREATE TABLE msrpd_accounts (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    username    VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    domain      VARCHAR(128) NOT NULL,
    ha1         VARCHAR(128) NOT NULL,
    ha1_sha256  VARCHAR(128) NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (username, domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
