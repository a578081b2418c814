//! Accounts for tests, and Digest answers to a relay's challenge.

use std::collections::HashMap;
use std::sync::Arc;

use msrp::Uri;
use msrp::header::Challenge;
use msrp_auth::digest::{Algorithm, DigestResponse, ha1};
use msrp_auth::{BoxFuture, CredentialStore};

/// Accounts as clear passwords; HA1 computed on lookup.
pub struct Users(pub HashMap<(String, String), String>);

impl CredentialStore for Users {
    fn ha1<'a>(
        &'a self,
        user: &'a str,
        realm: &'a str,
        alg: Algorithm,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        let found = self.0.get(&(user.to_owned(), realm.to_owned())).map(|p| ha1(alg, user, realm, p));
        Box::pin(async move { Ok(found) })
    }
}

pub fn users(realm: &str) -> Arc<Users> {
    let mut m = HashMap::new();
    m.insert(("alice".to_owned(), realm.to_owned()), "alicepw".to_owned());
    m.insert(("bob".to_owned(), realm.to_owned()), "bobpw".to_owned());
    m.insert(("carol".to_owned(), realm.to_owned()), "carolpw".to_owned());
    m.insert(("dave".to_owned(), realm.to_owned()), "davepw".to_owned());
    Arc::new(Users(m))
}

/// Digest credentials answering challenge `c` (RFC 7616 §3.4 with method AUTH).
pub fn credentials(
    c: &Challenge,
    user: &str,
    password: &str,
    uri: &Uri,
    nc: u32,
    with_uri: bool,
) -> msrp::header::Credentials {
    let answer = DigestResponse::answer(c, user, password, "AUTH", uri.as_str(), nc, "0a4f113b").unwrap();
    msrp::header::Credentials::parse(&answer.header_value(with_uri)).unwrap()
}
