//! Discovery (RFC 8414, OpenID Connect Discovery 1.0): the metadata document is read,
//! checked and kept, and credentials built from it follow what it says.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::ServiceExt;
use tower_oauth::{
    fetch::HttpFetcher, mock::MockServer, AuthMethod, ClientCredentials, Discovery, ErrorKind,
    FetchReason, ProviderMetadata, TokenRequest,
};

fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An in-test provider: answers `documents` by path (404 for others) and records the
/// paths it was asked for.
type Provider =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

fn provider(documents: Vec<(&'static str, String)>) -> (Provider, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let documents = Arc::new(documents);
    let service = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let (log, documents) = (log.clone(), documents.clone());
        async move {
            let path = req.uri().path().to_owned();
            log.lock().unwrap().push(req.uri().to_string());
            let found = documents.iter().find(|(p, _)| *p == path);
            let mut res = Response::new(Full::new(Bytes::from(
                found.map(|(_, d)| d.clone()).unwrap_or_default(),
            )));
            if found.is_none() {
                *res.status_mut() = StatusCode::NOT_FOUND;
            }
            Ok::<_, Infallible>(res)
        }
    });
    (Provider::new(service), asked)
}

fn document(issuer: &str, extra: &str) -> String {
    format!(r#"{{"issuer":"{issuer}","token_endpoint":"https://auth.example/oauth/token"{extra}}}"#)
}

#[tokio::test]
async fn credentials_discovered_from_the_mock_get_tokens_there() {
    let server = MockServer::start().await.unwrap();
    let metadata = ProviderMetadata::discover(&server.base_url())
        .await
        .unwrap();
    assert_eq!(metadata.issuer, server.base_url());
    assert_eq!(metadata.token_endpoint, server.token_url());
    assert_eq!(
        metadata.token_endpoint_auth_methods_supported.as_deref(),
        Some(
            &[
                "client_secret_post".to_owned(),
                "client_secret_basic".to_owned()
            ][..]
        )
    );
    assert!(metadata.other.contains_key("grant_types_supported"));
    let creds =
        ClientCredentials::from_metadata(&metadata, server.client_id(), server.client_secret())
            .unwrap()
            .scope("read");
    let token = HttpFetcher::https(creds)
        .oneshot(TokenRequest::new(None, FetchReason::First))
        .await
        .unwrap();
    assert!(!token.access_token.secret().is_empty());
    assert_eq!(server.stats().discovery_requests, 1);
    assert_eq!(server.stats().tokens_issued, 1);
}

#[tokio::test]
async fn a_document_naming_another_issuer_is_refused_without_showing_either() {
    let (client, _) = provider(vec![(
        "/.well-known/oauth-authorization-server",
        document("https://svc:hunter2@evil.example", ""),
    )]);
    let err = ProviderMetadata::discover_with(client, "https://auth.example")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("issuer"), "{shown}");
    for hidden in ["hunter2", "evil", "auth.example"] {
        assert!(!shown.contains(hidden), "{hidden}: {shown}");
    }
    // Against the mock: its issuer has no trailing slash, so this one does not match.
    let server = MockServer::start().await.unwrap();
    let err = ProviderMetadata::discover_with(http_client(), &format!("{}/", server.base_url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test]
async fn an_issuer_with_a_path_puts_the_well_known_part_before_it() {
    let issuer = "https://auth.example/tenant/one";
    let (client, asked) = provider(vec![(
        "/.well-known/oauth-authorization-server/tenant/one",
        document(issuer, ""),
    )]);
    let metadata = ProviderMetadata::discover_with(client, issuer)
        .await
        .unwrap();
    assert_eq!(metadata.issuer, issuer);
    assert_eq!(
        *asked.lock().unwrap(),
        ["https://auth.example/.well-known/oauth-authorization-server/tenant/one"]
    );
}

#[tokio::test]
async fn the_openid_configuration_is_read_when_the_rfc_8414_document_is_missing() {
    let issuer = "https://auth.example/tenant";
    let (client, asked) = provider(vec![(
        "/tenant/.well-known/openid-configuration",
        document(issuer, r#","dpop_signing_alg_values_supported":["ES256"]"#),
    )]);
    let metadata = ProviderMetadata::discover_with(client, issuer)
        .await
        .unwrap();
    assert_eq!(
        metadata.dpop_signing_alg_values_supported,
        Some(vec!["ES256".to_owned()])
    );
    assert_eq!(
        *asked.lock().unwrap(),
        [
            "https://auth.example/.well-known/oauth-authorization-server/tenant",
            "https://auth.example/tenant/.well-known/openid-configuration",
        ]
    );
    // Neither there: the second status stands.
    let (client, _) = provider(vec![]);
    let err = ProviderMetadata::discover_with(client, issuer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HttpStatus, "{err}");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
}

#[tokio::test]
async fn a_token_endpoint_the_secret_could_leak_to_is_refused() {
    let issuer = "https://auth.example";
    for (endpoint, says) in [
        ("http://auth.example/token", "plain http"),
        ("https://user:pw@auth.example/token", "user"),
        ("https://auth.example/token#frag", "fragment"),
    ] {
        let doc = format!(r#"{{"issuer":"{issuer}","token_endpoint":"{endpoint}"}}"#);
        let (client, _) = provider(vec![("/.well-known/oauth-authorization-server", doc)]);
        let err = ProviderMetadata::discover_with(client, issuer)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{endpoint}: {err}");
        assert!(err.to_string().contains(says), "{endpoint}: {err}");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
    // The same goes for the mTLS alias.
    let doc = document(
        issuer,
        r#","mtls_endpoint_aliases":{"token_endpoint":"http://mtls.example/token"}"#,
    );
    let (client, _) = provider(vec![("/.well-known/oauth-authorization-server", doc)]);
    let err = ProviderMetadata::discover_with(client, issuer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test]
async fn a_document_that_is_not_json_is_malformed() {
    for body in ["<html>", "", r#"{"issuer":1}"#] {
        let (client, _) = provider(vec![(
            "/.well-known/oauth-authorization-server",
            body.to_owned(),
        )]);
        let err = ProviderMetadata::discover_with(client, "https://auth.example")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{body}: {err}");
    }
}

#[tokio::test]
async fn a_method_the_provider_does_not_list_is_refused_before_anything_is_sent() {
    let server = MockServer::start().await.unwrap();
    let metadata = ProviderMetadata::discover_with(http_client(), &server.base_url())
        .await
        .unwrap();
    assert!(metadata.supports(AuthMethod::ClientSecretBasic));
    assert!(!metadata.supports(AuthMethod::TlsClientAuth));
    let creds =
        ClientCredentials::from_metadata(&metadata, server.client_id(), server.client_secret())
            .unwrap()
            .scope("read")
            .auth_method(AuthMethod::SelfSignedTlsClientAuth);
    let err = HttpFetcher::new(http_client(), creds.clone())
        .oneshot(TokenRequest::new(None, FetchReason::First))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("self_signed_tls_client_auth"),
        "{err}"
    );
    assert_eq!(server.stats().token_requests, 0);
    let at_once = creds
        .clone()
        .try_auth_method(AuthMethod::TlsClientAuth)
        .unwrap_err();
    assert_eq!(at_once.kind(), ErrorKind::Config);
    assert!(at_once.to_string().contains("tls_client_auth"), "{at_once}");
    assert!(creds
        .clone()
        .try_auth_method(AuthMethod::ClientSecretPost)
        .is_ok());
    // A listed one works.
    HttpFetcher::new(
        http_client(),
        creds.auth_method(AuthMethod::ClientSecretBasic),
    )
    .oneshot(TokenRequest::new(None, FetchReason::First))
    .await
    .unwrap();
    assert_eq!(server.stats().tokens_issued, 1);
}

#[tokio::test]
async fn basic_is_chosen_when_the_provider_lists_it_and_not_post() {
    let issuer = "https://auth.example";
    let doc = document(
        issuer,
        r#","token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_basic"]"#,
    );
    let (client, _) = provider(vec![("/.well-known/oauth-authorization-server", doc)]);
    let metadata = ProviderMetadata::discover_with(client, issuer)
        .await
        .unwrap();
    let creds = ClientCredentials::from_metadata(&metadata, "id", "secret").unwrap();
    assert_eq!(creds.auth_method_ref(), &AuthMethod::ClientSecretBasic);
}

#[tokio::test]
async fn a_tls_method_uses_the_mtls_alias_of_the_token_endpoint() {
    let issuer = "https://auth.example";
    let doc = document(
        issuer,
        r#","token_endpoint_auth_methods_supported":["client_secret_post","tls_client_auth"],
            "mtls_endpoint_aliases":{"token_endpoint":"https://mtls.auth.example/oauth/token"}"#,
    );
    let (client, _) = provider(vec![("/.well-known/oauth-authorization-server", doc)]);
    let metadata = ProviderMetadata::discover_with(client, issuer)
        .await
        .unwrap();
    let creds = ClientCredentials::from_metadata(&metadata, "id", "").unwrap();
    assert_eq!(creds.token_url(), "https://auth.example/oauth/token");
    let mtls = creds.auth_method(AuthMethod::TlsClientAuth);
    assert_eq!(mtls.token_url(), "https://mtls.auth.example/oauth/token");
    let back = mtls.auth_method(AuthMethod::ClientSecretPost);
    assert_eq!(back.token_url(), "https://auth.example/oauth/token");
}

#[tokio::test]
async fn the_cache_reads_an_issuers_document_once_for_many_credentials() {
    const BUILDS: usize = 8;
    let server = MockServer::start().await.unwrap();
    let issuer = server.base_url();
    let discovery = Discovery::with_client(http_client());
    let built = futures_util::future::join_all(
        (0..BUILDS).map(|_| discovery.credentials(&issuer, "id", "secret")),
    )
    .await;
    for creds in built {
        assert_eq!(creds.unwrap().token_url().to_string(), server.token_url());
    }
    discovery
        .clone()
        .credentials(&issuer, "id", "secret")
        .await
        .unwrap();
    assert_eq!(server.stats().discovery_requests, 1);

    // A document older than the TTL is read again.
    let expiring = Discovery::with_client(http_client()).ttl(Duration::ZERO);
    for _ in 0..2 {
        expiring.metadata(&issuer).await.unwrap();
    }
    assert_eq!(server.stats().discovery_requests, 3);
}
