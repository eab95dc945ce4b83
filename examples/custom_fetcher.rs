//! Tokens from your own source: any `Service<TokenRequest, Response = Token>` can fetch
//! them, here a `tower::service_fn`.
//!
//! The fetcher stands in for a secrets sidecar or a vault agent that holds the client
//! secret and hands out access tokens, so the application never sees the secret. This one
//! gets its tokens from the embedded mock SimpleDocs server's token endpoint; a real one
//! would ask Vault, a cloud metadata endpoint, or read a file an agent keeps fresh. The
//! layer still does everything else: caching, one fetch at a time per scope, renewal, and
//! a new token plus a replay when the API rejects one.
//!
//! The layer uses `ScopePolicy::by_method("read", "write")`: GETs carry a `read` token,
//! the POST a `write` token, each fetched and cached on its own. `layer.handle().state()`
//! shows both along the way.
//!
//! ```text
//! cargo run --example custom_fetcher
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_oauth::{
    mock::MockServer, BoxError, OAuthLayer, Scope, ScopePolicy, Token, TokenHandle, TokenRequest,
};

/// The stand-in vault: it alone knows the client secret.
#[derive(Clone)]
struct Vault {
    http: Client<HttpConnector, Full<Bytes>>,
    token_url: String,
    client_id: String,
    client_secret: String,
}

impl Vault {
    /// A token for `scope`, from the token endpoint's client-credentials grant.
    async fn token(&self, scope: Option<&Scope>) -> Result<Token, BoxError> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &self.client_id)
                .append_pair("client_secret", &self.client_secret);
            if let Some(scope) = scope {
                form.append_pair("scope", scope.as_str());
            }
            form.finish()
        };
        let req = Request::post(&self.token_url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))?;
        let res = self.http.request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            // Any error will do; errors other than `tower_oauth::Error` count as
            // transport failures, which the layer retries.
            return Err(format!("vault could not get a token: http {status}").into());
        }
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        let access_token = json["access_token"]
            .as_str()
            .ok_or("vault answered without an access_token")?;
        let lifetime = json["expires_in"].as_u64().map(Duration::from_secs);
        let mut token = Token::new(access_token, lifetime);
        if let Some(granted) = json["scope"].as_str() {
            token = token.with_scope(granted);
        }
        Ok(token)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mock = MockServer::start().await?;
    let base = mock.base_url();
    println!("mock SimpleDocs server at {base}");

    let http = Client::builder(TokioExecutor::new()).build_http();
    let vault = Vault {
        http: http.clone(),
        token_url: mock.token_url(),
        client_id: mock.client_id().to_owned(),
        client_secret: mock.client_secret().to_owned(),
    };
    let fetcher = service_fn(move |req: TokenRequest| {
        let vault = vault.clone();
        async move {
            let scope = req.scope.as_ref().map_or("", Scope::as_str);
            println!("  fetcher: token for scope \"{scope}\" ({:?})", req.reason);
            vault.token(req.scope.as_ref()).await
        }
    });

    let layer = OAuthLayer::with_fetcher(fetcher)
        .scope_policy(ScopePolicy::by_method("read", "write"))
        .build();
    let handle = layer.handle();
    let mut api = ServiceBuilder::new().layer(layer).service(http);

    println!("\nbefore any request:");
    print_state(&handle);

    println!("\nwarm up (fails fast at start-up if the vault cannot deliver):");
    handle.warm_up().await?;
    print_state(&handle);

    println!("\nrequests:");
    for i in 1..=2 {
        let req = Request::get(format!("{base}/api/v1/workflows")).body(Full::default())?;
        let res = api.ready().await?.call(req).await?;
        show(&format!("GET  /api/v1/workflows #{i}"), res, StatusCode::OK).await?;
    }
    let req = Request::post(format!("{base}/api/v1/documents"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(
            b"signed by a vault-issued token",
        )))?;
    let res = api.ready().await?.call(req).await?;
    show("POST /api/v1/documents", res, StatusCode::CREATED).await?;

    println!("\nthe server revokes every token; the next GET gets a new read token:");
    mock.revoke_all();
    let req = Request::get(format!("{base}/api/v1/workflows")).body(Full::default())?;
    let res = api.ready().await?.call(req).await?;
    show("GET  /api/v1/workflows #3", res, StatusCode::OK).await?;
    print_state(&handle);

    let fetches: Vec<u64> = handle.state().iter().map(|s| s.fetches).collect();
    if fetches != [2, 1] || mock.stats().tokens_issued != 3 {
        return Err(format!("expected 2 read and 1 write fetches, got {fetches:?}").into());
    }
    Ok(())
}

/// One line per scope set; the handle never shows a token.
fn print_state(handle: &TokenHandle) {
    for s in handle.state() {
        let scope = s.scope.as_ref().map_or("", Scope::as_str);
        let granted = s.granted_scope.as_ref().map_or("-", Scope::as_str);
        let expires = s
            .expires_in
            .map_or("-".to_owned(), |d| format!("{} s", d.as_secs()));
        println!(
            "  [{scope}] status: {:?}, granted: {granted}, expires in: {expires}, fetches: {}, fetching: {}, last error: {:?}",
            s.status, s.fetches, s.fetching, s.last_error
        );
    }
}

/// Prints a response's status and body; fails unless the status is `expected`.
async fn show<B>(what: &str, res: Response<B>, expected: StatusCode) -> Result<(), BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(Into::into)?
        .to_bytes();
    println!("  {what}: {status} {}", String::from_utf8_lossy(&body));
    if status != expected {
        return Err(format!("{what}: expected {expected}, got {status}").into());
    }
    Ok(())
}
