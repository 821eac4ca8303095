//! Authentication with a registry: credentials, the challenges a registry answers with, the
//! bearer tokens it grants and what each repository was found to need. The flow that uses
//! them lives in the session; this layer holds no connection.

mod challenge;
mod credentials;
mod modes;
mod tokens;

pub use challenge::{Challenge, parse_challenge};
pub use credentials::Credentials;
pub(crate) use modes::{AuthKey, AuthMode, AuthModes};
pub(crate) use tokens::{MAX_TOKEN_BYTES, TokenCache, TokenKey, TokenResponse};

/// What authentication learns that outlives a scan: tokens and each repository's mode.
#[derive(Default)]
pub(crate) struct AuthState {
    pub tokens: TokenCache,
    pub modes: AuthModes,
}
