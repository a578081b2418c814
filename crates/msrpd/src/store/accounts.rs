//! Where accounts are read: msrpd's own table, or the SIP platform's (Kamailio's or
//! OpenSIPS' `subscriber`), with names and columns from `[accounts]`.
//!
//! A Digest HA1 is H(username:realm:password) with the username exactly as the client sent
//! it (RFC 7616 §3.4.2). Tables keep it in up to four forms, and one row answers every
//! algorithm it can: a stored hash where there is one, else one computed from a clear-text
//! password.

use msrp_auth::digest::{Algorithm, ha1};

use super::Backend;
use crate::config::{AccountSchema, AccountsConfig};

/// `[accounts]` resolved against its schema: what to query and how to read a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTable {
    pub schema: AccountSchema,
    pub table: String,
    pub username: String,
    pub domain: Option<String>,
    pub password: Option<String>,
    pub ha1: Option<String>,
    pub ha1b: Option<String>,
    pub ha1_sha256: Option<String>,
    pub condition: Option<String>,
    /// `msrpd user add/passwd/remove` may write.
    pub manage: bool,
}

/// One account's row: the columns the table has, empty ones as `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub password: Option<String>,
    pub ha1: Option<String>,
    pub ha1b: Option<String>,
    pub ha1_sha256: Option<String>,
}

impl AccountTable {
    /// The layout `config` describes on `backend` (None: not known yet, the URL is checked
    /// elsewhere), or why it cannot work.
    pub fn resolve(config: &AccountsConfig, backend: Option<Backend>) -> Result<AccountTable, String> {
        let mut t = AccountTable::stock(config.schema, backend);
        let set = |slot: &mut Option<String>, v: &Option<String>| {
            if let Some(v) = v {
                *slot = (!v.is_empty()).then(|| v.clone());
            }
        };
        if let Some(table) = &config.table {
            t.table = table.clone();
        }
        if let Some(username) = &config.username {
            t.username = username.clone();
        }
        set(&mut t.domain, &config.domain);
        set(&mut t.password, &config.password);
        set(&mut t.ha1, &config.ha1);
        set(&mut t.ha1b, &config.ha1b);
        set(&mut t.ha1_sha256, &config.ha1_sha256);
        set(&mut t.condition, &config.condition);
        if let Some(manage) = config.manage {
            t.manage = manage;
        }
        for (key, name) in [("table", Some(&t.table)), ("username", Some(&t.username))]
            .into_iter()
            .chain(t.columns().map(|(key, name)| (key, Some(name))))
            .chain([("domain", t.domain.as_ref())])
        {
            if let Some(name) = name
                && !is_identifier(name)
            {
                return Err(format!(
                    "accounts.{key} = {name:?}: not a plain SQL name (letters, digits, _ and one . for a schema)"
                ));
            }
        }
        if t.algorithms().is_empty() {
            return Err(
                "accounts: no password, ha1, ha1b or ha1_sha256 column: nothing to check a password against".into()
            );
        }
        if t.manage && t.schema == AccountSchema::Msrpd && t != AccountTable::stock(AccountSchema::Msrpd, backend) {
            return Err(
                "accounts: msrpd's own table cannot be renamed; set schema and manage = true to write to another"
                    .into(),
            );
        }
        Ok(t)
    }

    /// A schema's stock layout on `backend`.
    fn stock(schema: AccountSchema, backend: Option<Backend>) -> AccountTable {
        let own_table = match backend {
            Some(Backend::Sqlite) | None => "subscriber",
            // Prefixed on a server: the database may be the SIP proxy's, with its own `subscriber`.
            Some(Backend::Postgres | Backend::MySql) => "msrpd_accounts",
        };
        let col = |s: &str| Some(s.to_owned());
        let (table, password, ha1b, ha1_sha256, manage) = match schema {
            AccountSchema::Msrpd => (own_table, None, None, col("ha1_sha256"), true),
            AccountSchema::Kamailio => ("subscriber", col("password"), col("ha1b"), None, false),
            AccountSchema::Opensips => ("subscriber", col("password"), None, col("ha1_sha256"), false),
        };
        AccountTable {
            schema,
            table: table.into(),
            username: "username".into(),
            domain: col("domain"),
            password,
            ha1: col("ha1"),
            ha1b,
            ha1_sha256,
            condition: None,
            manage,
        }
    }

    /// msrpd's own table (its migration creates it; it has a `created_at` column).
    pub fn is_own(&self) -> bool {
        self.schema == AccountSchema::Msrpd && self.manage
    }

    /// The secret columns present, with their `[accounts]` key.
    pub fn columns(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [("password", &self.password), ("ha1", &self.ha1), ("ha1b", &self.ha1b), ("ha1_sha256", &self.ha1_sha256)]
            .into_iter()
            .filter_map(|(k, c)| c.as_ref().map(|c| (k, c)))
    }

    /// The Digest algorithms this table lets msrpd verify, preferred first (clients take the
    /// first they support, RFC 7616 §3.7). SHA-256 only with a SHA-256 hash or a clear-text
    /// password to compute one from; and first only with a stored SHA-256 hash: a Kamailio
    /// row may have its password column empty (kamctl with STORE_PLAINTEXT_PW=0), and MD5 is
    /// what every row of such a table can answer.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let md5 = self.ha1.is_some() || self.ha1b.is_some() || self.password.is_some();
        let sha = self.ha1_sha256.is_some() || self.password.is_some();
        match (self.ha1_sha256.is_some(), md5, sha) {
            (true, true, _) => vec![Algorithm::Sha256, Algorithm::Md5],
            (true, false, _) => vec![Algorithm::Sha256],
            (false, true, true) => vec![Algorithm::Md5, Algorithm::Sha256],
            (false, true, false) => vec![Algorithm::Md5],
            (false, false, true) => vec![Algorithm::Sha256],
            (false, false, false) => Vec::new(),
        }
    }

    /// `SELECT username[, domain], <secret columns> FROM table WHERE username = ? [AND domain = ?]
    /// [AND (condition)]`: the name columns come back to be compared exactly (a MySQL `_ci`
    /// collation would let `ALICE` find `alice`).
    pub fn lookup_sql(&self) -> String {
        let cols: Vec<&str> = std::iter::once(&self.username)
            .chain(&self.domain)
            .chain(self.columns().map(|(_, c)| c))
            .map(String::as_str)
            .collect();
        format!("SELECT {} FROM {}{}", cols.join(", "), self.table, self.account_filter())
    }

    /// ` WHERE username = ? [AND domain = ?] [AND (condition)]`.
    pub fn account_filter(&self) -> String {
        let mut sql = format!(" WHERE {} = ?", self.username);
        if let Some(domain) = &self.domain {
            sql += &format!(" AND {domain} = ?");
        }
        if let Some(cond) = &self.condition {
            sql += &format!(" AND ({cond})");
        }
        sql
    }

    /// `SELECT username, domain FROM table [WHERE condition] ORDER BY …`.
    pub fn list_sql(&self) -> String {
        let domain = self.domain.as_deref().unwrap_or("''");
        let filter = self.condition.as_ref().map(|c| format!(" WHERE ({c})")).unwrap_or_default();
        format!("SELECT {}, {domain} FROM {}{filter} ORDER BY 2, 1", self.username, self.table)
    }

    /// Reads a row of `lookup_sql` (empty strings and NULLs as absent, hex lower-cased), if
    /// its name is exactly `user` (and its domain `domain`, in any case).
    pub fn secrets(&self, row: &sqlx::any::AnyRow, user: &str, domain: &str) -> Result<Option<Secrets>, sqlx::Error> {
        use sqlx::Row;
        let name: String = row.try_get(0)?;
        let mut first = 1;
        if self.domain.is_some() {
            let d: String = row.try_get(1)?;
            if !d.eq_ignore_ascii_case(domain) {
                return Ok(None);
            }
            first = 2;
        }
        if name != user {
            return Ok(None);
        }
        let mut s = Secrets::default();
        for (i, (key, _)) in self.columns().enumerate() {
            let value: Option<String> = row.try_get(first + i)?;
            let value = value.filter(|v| !v.is_empty());
            match key {
                "password" => s.password = value,
                "ha1" => s.ha1 = value.map(|v| v.to_ascii_lowercase()),
                "ha1b" => s.ha1b = value.map(|v| v.to_ascii_lowercase()),
                _ => s.ha1_sha256 = value.map(|v| v.to_ascii_lowercase()),
            }
        }
        Ok(Some(s))
    }

    /// The row that holds the account a client names in `realm`, as (username, domain) to
    /// bind: `alice` and `alice@REALM` are user `alice` of the realm's domain; a name of
    /// another domain is no account here (each realm checks its own accounts, as Kamailio).
    pub fn key<'a>(&self, username: &'a str, realm: &str) -> Option<(&'a str, String)> {
        msrp_auth::digest::account_user(username, realm).map(|user| (user, realm.to_ascii_lowercase()))
    }

    /// The columns and values `msrpd user add` writes for `user@domain` (the domain is the
    /// realm of the hashes, as the relay uses it).
    pub fn new_row(&self, user: &str, domain: &str, password: &str) -> Vec<(String, String)> {
        let mut row = vec![(self.username.clone(), user.to_owned())];
        if let Some(c) = &self.domain {
            row.push((c.clone(), domain.to_owned()));
        }
        row.extend(self.secret_values(user, domain, password));
        row
    }

    /// The secret columns and their values for a new password.
    pub fn secret_values(&self, user: &str, domain: &str, password: &str) -> Vec<(String, String)> {
        let mut row = Vec::new();
        let full = format!("{user}@{domain}");
        for (key, col) in self.columns() {
            let value = match key {
                "password" => password.to_owned(),
                "ha1" => ha1(Algorithm::Md5, user, domain, password),
                "ha1b" => ha1(Algorithm::Md5, &full, domain, password),
                _ => ha1(Algorithm::Sha256, user, domain, password),
            };
            row.push((col.clone(), value));
        }
        row
    }
}

impl Secrets {
    /// The HA1 for `alg` of `username` (as the client sent it) in `realm`, if this row can
    /// give one.
    pub fn ha1_for(&self, username: &str, realm: &str, alg: Algorithm) -> Option<String> {
        let qualified = username.contains('@');
        let stored = match (alg, qualified) {
            (Algorithm::Md5, false) => self.ha1.clone(),
            (Algorithm::Md5, true) => self.ha1b.clone(),
            (Algorithm::Sha256, false) => self.ha1_sha256.clone(),
            // No stored SHA-256 form of `user@domain` exists in either schema.
            (Algorithm::Sha256, true) => None,
        };
        stored.or_else(|| self.password.as_ref().map(|p| ha1(alg, username, realm, p)))
    }
}

/// A table or column name msrpd will put into SQL: `name` or `schema.name`, ASCII letters,
/// digits and `_`, not starting with a digit.
fn is_identifier(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match s.split_once('.') {
        Some((schema, name)) => part(schema) && part(name),
        None => part(s),
    }
}

/// `?` placeholders as the backend writes them (PostgreSQL: `$1`, `$2`, …). msrpd's SQL has
/// no `?` elsewhere; an `[accounts] condition` must not use one either (CONFIG.md).
pub fn placeholders(sql: &str, backend: Backend) -> String {
    if backend != Backend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out += &format!("${n}");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> AccountsConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn schemas_fill_in_and_keys_override() {
        let k = AccountTable::resolve(&config("schema = \"kamailio\""), Some(Backend::Postgres)).unwrap();
        assert_eq!(
            k.lookup_sql(),
            "SELECT username, domain, password, ha1, ha1b FROM subscriber WHERE username = ? AND domain = ?"
        );
        assert_eq!(k.algorithms(), [Algorithm::Md5, Algorithm::Sha256], "a clear-text password gives both, MD5 first");
        assert!(!k.manage);
        let k = AccountTable::resolve(
            &config("schema = \"kamailio\"\npassword = \"\"\ndomain = \"\"\ncondition = \"enabled = 1\""),
            Some(Backend::MySql),
        )
        .unwrap();
        assert_eq!(k.lookup_sql(), "SELECT username, ha1, ha1b FROM subscriber WHERE username = ? AND (enabled = 1)");
        assert_eq!(k.algorithms(), [Algorithm::Md5], "no SHA-256 offered without a way to check it");
        let o = AccountTable::resolve(&config("schema = \"opensips\""), None).unwrap();
        assert_eq!(
            o.lookup_sql(),
            "SELECT username, domain, password, ha1, ha1_sha256 FROM subscriber WHERE username = ? AND domain = ?"
        );
        let own = AccountTable::resolve(&AccountsConfig::default(), Some(Backend::Postgres)).unwrap();
        assert_eq!(own.table, "msrpd_accounts");
        assert!(own.is_own());
        assert_eq!(
            AccountTable::resolve(&AccountsConfig::default(), Some(Backend::Sqlite)).unwrap().table,
            "subscriber"
        );
    }

    #[test]
    fn names_that_are_not_names_are_refused() {
        for bad in ["table = \"x; DROP TABLE y\"", "ha1 = \"a b\"", "domain = \"1x\"", "table = \"a.b.c\""] {
            assert!(AccountTable::resolve(&config(bad), None).is_err(), "{bad}");
        }
        assert!(AccountTable::resolve(&config("table = \"public.subscriber\"\nschema = \"kamailio\""), None).is_ok());
        assert!(AccountTable::resolve(&config("table = \"users\""), None).is_err(), "own table renamed");
        assert!(AccountTable::resolve(&config("table = \"users\"\nmanage = false"), None).is_ok());
    }

    #[test]
    fn a_row_answers_what_it_can() {
        let (user, realm, pw) = ("alice", "example.com", "secret");
        let kam = Secrets {
            password: None,
            ha1: Some(ha1(Algorithm::Md5, user, realm, pw)),
            ha1b: Some(ha1(Algorithm::Md5, "alice@example.com", realm, pw)),
            ha1_sha256: None,
        };
        assert_eq!(kam.ha1_for(user, realm, Algorithm::Md5), kam.ha1);
        assert_eq!(kam.ha1_for("alice@example.com", realm, Algorithm::Md5), kam.ha1b);
        assert_eq!(kam.ha1_for(user, realm, Algorithm::Sha256), None);
        let clear = Secrets { password: Some(pw.into()), ..Secrets::default() };
        for (name, alg) in [(user, Algorithm::Sha256), ("alice@example.com", Algorithm::Sha256), (user, Algorithm::Md5)]
        {
            assert_eq!(clear.ha1_for(name, realm, alg), Some(ha1(alg, name, realm, pw)));
        }
    }

    #[test]
    fn qualified_usernames_name_their_row() {
        let t = AccountTable::resolve(&config("schema = \"kamailio\""), None).unwrap();
        assert_eq!(t.key("alice", "Example.com"), Some(("alice", "example.com".to_owned())));
        assert_eq!(t.key("alice@EXAMPLE.com", "example.com"), Some(("alice", "example.com".to_owned())));
        assert_eq!(t.key("alice@other.org", "example.com"), None, "another domain's account");
        let row = t.new_row("bob", "example.com", "pw");
        assert_eq!(row[0], ("username".to_owned(), "bob".to_owned()));
        assert_eq!(row[2], ("password".to_owned(), "pw".to_owned()));
        assert_eq!(row[4].1, ha1(Algorithm::Md5, "bob@example.com", "example.com", "pw"));
    }

    #[test]
    fn postgres_numbers_its_placeholders() {
        assert_eq!(placeholders("a = ? AND b = ?", Backend::Postgres), "a = $1 AND b = $2");
        assert_eq!(placeholders("a = ?", Backend::MySql), "a = ?");
    }
}
