//! What a failed HTTP exchange means, decided by the error's type (reqwest's flags, the rustls
//! error in its source chain), never by the text of a message that also holds the URL.

use std::error::Error as StdError;

/// The kind of a request that got no HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetFailure {
    Timeout,
    /// TLS failed; `hint` says what the user can do about it.
    Tls {
        hint: &'static str,
    },
    /// Refused, reset, DNS, or a peer that does not speak HTTP: worth a retry.
    Unreachable,
}

pub(crate) const HINT_TRUST: &str = " (trust its CA with a CA bundle, or set insecureSkipVerify)";
pub(crate) const HINT_PLAIN_HTTP: &str = " (is the registry plain http? use an http:// URL)";
const HINT_NONE: &str = "";

pub(crate) fn classify(e: &reqwest::Error) -> NetFailure {
    if e.is_timeout() {
        return NetFailure::Timeout;
    }
    match tls_error(e) {
        Some(t) => NetFailure::Tls { hint: tls_hint(t) },
        None => NetFailure::Unreachable,
    }
}

fn tls_hint(e: &rustls::Error) -> &'static str {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(_) | E::NoCertificatesPresented | E::UnsupportedNameType => {
            HINT_TRUST
        }
        // The peer's first bytes were not a TLS record: usually an HTTP server.
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => HINT_PLAIN_HTTP,
        _ => HINT_NONE,
    }
}

/// The rustls error anywhere in the source chain. `io::Error::source` skips the error it
/// wraps, so wrapped errors are looked into explicitly.
fn tls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    let mut depth = 0;
    while let Some(err) = current {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(t) = tls_error(inner)
        {
            return Some(t);
        }
        depth += 1;
        if depth > 32 {
            return None;
        }
        current = err.source();
    }
    None
}

/// reqwest's Display hides the cause ("error sending request"); users need the root cause.
pub(crate) fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(Box<dyn StdError + Send + Sync>);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn rustls_errors_are_found_behind_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = Wrap(Box::new(io));
        let found = tls_error(&e).expect("found");
        assert_eq!(tls_hint(found), HINT_TRUST);
        let plain = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(
            tls_hint(tls_error(&Wrap(Box::new(plain))).unwrap()),
            HINT_PLAIN_HTTP
        );
    }

    #[test]
    fn words_in_messages_do_not_make_a_tls_error() {
        // A host named tls-proxy with a refused connection is still just unreachable.
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "tcp connect error to tls-proxy: certificate handshake refused",
        );
        assert!(tls_error(&Wrap(Box::new(refused))).is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable_whatever_the_host_is_called() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        crate::registry::install_crypto_provider();
        let client = reqwest::Client::builder()
            .resolve(
                "tls-certificate-handshake.test",
                ([127, 0, 0, 1], port).into(),
            )
            .build()
            .unwrap();
        let e = client
            .get(format!("https://tls-certificate-handshake.test:{port}/v2/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(classify(&e), NetFailure::Unreachable, "{}", error_chain(&e));
    }
}
