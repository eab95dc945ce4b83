//! `HTTPS_PROXY` and `NO_PROXY` for the built-in client. The variables are the
//! process's, so this file holds one test.

#[path = "support/tls_endpoint.rs"]
mod tls_endpoint;

use std::sync::{Arc, Mutex};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::ServiceExt;
use tower_oauth::{fetch::HttpFetcher, ClientCredentials, FetchReason, TokenRequest};

/// Starts a `CONNECT` proxy on 127.0.0.1; returns its URL and the targets it tunnelled to.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = Arc::new(Mutex::new(Vec::new()));
    let seen = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let Some(target) = head
                    .strip_prefix("CONNECT ")
                    .and_then(|rest| rest.split(' ').next())
                else {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                        .await;
                    return;
                };
                seen.lock().unwrap().push(target.to_owned());
                let mut upstream = TcpStream::connect(target).await.unwrap();
                client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (url, tunnels)
}

#[tokio::test]
async fn https_proxy_tunnels_token_requests_and_no_proxy_bypasses_it() {
    let endpoint = tls_endpoint::start().await;
    let (proxy, tunnels) = connect_proxy().await;
    for name in [
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        std::env::remove_var(name);
    }
    std::env::set_var("HTTPS_PROXY", &proxy);
    let creds = ClientCredentials::new(&endpoint.url, "id", "secret")
        .add_root_certificate(&endpoint.ca_pem)
        .unwrap();
    let fetch = |creds: ClientCredentials| async move {
        HttpFetcher::https(creds)
            .oneshot(TokenRequest::new(None, FetchReason::First))
            .await
            .unwrap()
    };

    let token = fetch(creds.clone()).await;
    assert_eq!(token.access_token.secret(), "tls-token");
    let target = format!("localhost:{}", endpoint.port);
    assert_eq!(tunnels.lock().unwrap().len(), 1);
    assert_eq!(tunnels.lock().unwrap()[0], target);

    std::env::set_var("NO_PROXY", "localhost");
    fetch(creds).await;
    assert_eq!(
        *tunnels.lock().unwrap(),
        [target.as_str()],
        "NO_PROXY host was tunnelled"
    );
    assert_eq!(endpoint.served(), 2);
}
