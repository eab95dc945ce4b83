//! Fails (panics) if tower-oauth's default features leave rustls unable to choose a
//! process default crypto provider.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Panics when more than one provider is enabled and none is installed.
    let _config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    // The built-in token client builds too.
    let _client = tower_oauth::fetch::https_client();
    println!("coexist: rustls::ClientConfig::builder() chose a provider");
}
