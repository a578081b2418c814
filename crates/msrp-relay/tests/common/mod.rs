//! The relay's tests use the workspace's test kit (an MSRP endpoint, a relay on port 0,
//! certificates, accounts); this module only names it for them.

#![allow(unused_imports)]

pub use msrp_testkit::*;
