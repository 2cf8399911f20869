//! One TLS stack for every HTTPS client in the process: rustls with ring.
//!
//! The cloud SDKs default to aws-lc, whose C build is the longest build script of a first
//! `cargo build` (docs/BENCHMARKS.md, "A new user's first video"), while kube, our own
//! token signing and object_store already use ring. So every client is built on ring:
//! the AWS SDK through an explicit HTTP client, everything else (reqwest, tonic, the Google
//! auth crate, kube) through rustls' process-wide default provider, installed here.

/// Makes ring rustls' process-wide crypto provider. Idempotent; call it before building any
/// client whose crate looks the default up instead of choosing one (the Google auth crate
/// panics without one).
pub fn use_ring() {
    // Err means a provider is installed already: this one, from an earlier call.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The AWS SDK's shared configuration from the standard chain (environment, profile, SSO,
/// credential process, instance metadata), with `region` if given, over an HTTPS client on
/// rustls with ring.
pub async fn aws_config(region: Option<&str>) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls;
    use_ring();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    loader.load().await
}

/// A reqwest client builder whose TLS runs on ring (reqwest is built without a provider of
/// its own and panics without a process default).
pub fn http_client() -> reqwest::ClientBuilder {
    use_ring();
    reqwest::Client::builder()
}

/// What to do about a failure whose message shows a TLS certificate was refused (every
/// client trusts the system's store, or the PEM bundle `SSL_CERT_FILE` names).
pub fn tls_hint(message: &str) -> Option<&'static str> {
    message.contains("invalid peer certificate").then_some(
        "the server's TLS certificate is not trusted here: add its certificate authority to \
         the system's store (update-ca-certificates), or point SSL_CERT_FILE at a PEM bundle \
         that holds it",
    )
}
