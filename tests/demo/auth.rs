//! The demo's client-authentication options: signed assertions (`private_key_jwt`,
//! `client_secret_jwt`), DPoP, mutual TLS and discovery, against the embedded mock or
//! one this test starts. Their bad input is a usage error (exit 2) that shows no key.

use super::{all_output, example, run};

/// A test fixture key (tests/fixtures/oidc/README.md); never a real one.
#[cfg(feature = "jwt")]
fn fixture(name: &str) -> String {
    let path: std::path::PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "oidc",
        name,
    ]
    .iter()
    .collect();
    path.to_string_lossy().into_owned()
}

#[cfg(feature = "jwt")]
#[test]
fn private_key_jwt_with_a_generated_key_registers_it_with_the_mock_and_its_assertions_verify() {
    let out = run(&["--auth-method", "private_key_jwt", "--requests", "4"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.number("ok"), 4, "{out}");
    assert_eq!(out.summary()["auth_method"], "private_key_jwt", "{out}");
    assert_eq!(
        out.lines_with("registered with the embedded mock"),
        1,
        "{out}"
    );
    let mock = out.mock_stats();
    assert_eq!(mock["tokens_issued"], 1, "{out}");
    assert_eq!(mock["assertions_verified"], 1, "{out}");
    assert!(!all_output(&out).contains("PRIVATE KEY"), "{out}");
}

#[cfg(feature = "jwt")]
#[test]
fn private_key_jwt_with_a_p256_key_file_and_es256_gets_its_token_by_assertion() {
    let key = fixture("ec.pem");
    let args = [
        "--auth-method",
        "private_key_jwt",
        "--private-key",
        &key,
        "--signing-alg",
        "ES256",
        "--key-id",
        "demo-key",
        "--requests",
        "3",
    ];
    let out = run(&args);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.number("ok"), 3, "{out}");
    assert_eq!(out.mock_stats()["assertions_verified"], 1, "{out}");
    assert_eq!(out.lines_with("ES256 key \"demo-key\" from"), 1, "{out}");
}

#[cfg(feature = "jwt")]
#[test]
fn client_secret_jwt_signs_with_a_mock_secret_long_enough_for_hs256() {
    let out = run(&["--auth-method", "client_secret_jwt", "--requests", "3"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.number("ok"), 3, "{out}");
    assert_eq!(out.summary()["auth_method"], "client_secret_jwt", "{out}");
    assert_eq!(out.mock_stats()["assertions_verified"], 1, "{out}");
    assert!(
        !all_output(&out).contains("simpledocs-demo-secret"),
        "{out}"
    );
}

#[cfg(feature = "jwt")]
#[test]
fn dpop_tokens_are_used_after_the_token_endpoint_and_the_api_challenge_for_nonces() {
    let out = run(&["--dpop", "--requests", "8"]);
    assert_eq!(out.code, Some(0), "{out}");
    let summary = out.summary();
    assert_eq!(summary["ok"], 8, "{out}");
    assert_eq!(summary["statuses"], serde_json::json!({"200": 8}), "{out}");
    assert_eq!(summary["dpop"], true, "{out}");
    // One use_dpop_nonce at the token endpoint and at least one at the API, each met.
    let challenges = summary["dpop_nonce_challenges"].as_u64().expect("a count");
    assert!(challenges >= 2, "{out}");
    let mock = out.mock_stats();
    assert_eq!(mock["dpop_nonce_challenges"], challenges, "{out}");
    // A proof with every API call, and one more with each challenged request.
    assert!(mock["dpop_proofs_checked"] >= 8 + challenges, "{out}");
    assert_eq!(mock["tokens_issued"], 1, "{out}");
}

#[cfg(feature = "jwt")]
#[test]
fn a_signing_alg_that_does_not_fit_the_key_is_a_usage_error_that_shows_no_key() {
    let path = fixture("ec.pem");
    let pem = std::fs::read_to_string(&path).expect("the fixture key");
    let out = run(&[
        "--auth-method",
        "private_key_jwt",
        "--private-key",
        &path,
        "--signing-alg",
        "RS256",
    ]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("does not fit --signing-alg RS256"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    let text = all_output(&out);
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("-----"),
        "{out}"
    );
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(super::runs_of(line, &text).is_empty(), "{out}");
    }
}

#[test]
fn bad_key_and_certificate_options_are_usage_errors() {
    let out = run(&[
        "--auth-method",
        "private_key_jwt",
        "--private-key",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(out.code, Some(2), "{out}");
    if cfg!(feature = "jwt") {
        assert!(out.stderr.contains("cannot read it"), "{out}");
    }

    let out = run(&["--client-cert", "client.pem"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("--client-key"), "{out}");
}

#[test]
fn tls_client_auth_against_the_embedded_mock_is_refused_with_what_it_needs() {
    let out = run(&["--auth-method", "tls_client_auth"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("needs a real server"), "{out}");
    assert!(out.stderr.contains("--token-url or --issuer"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn the_token_endpoint_is_found_by_discovery_from_the_issuer() {
    use tower_oauth::mock::MockServer;

    let rt = tokio::runtime::Runtime::new().expect("a runtime for the mock");
    let mock = rt.block_on(MockServer::start()).expect("the mock starts");
    let base = mock.base_url();
    let args = [
        "--base-url",
        &base,
        "--issuer",
        &base,
        "--client-id",
        mock.client_id(),
        "--client-secret",
        mock.client_secret(),
        "--requests",
        "3",
    ];
    let out = run(&args);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.number("ok"), 3, "{out}");
    assert_eq!(out.lines_with("(found at issuer"), 1, "{out}");
    let stats = mock.stats();
    assert_eq!(
        (stats.discovery_requests, stats.tokens_issued),
        (1, 1),
        "{out}"
    );

    let out = run(&["--issuer", &base, "--token-url", &mock.token_url()]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("cannot be used with"), "{out}");
}

#[cfg(not(feature = "jwt"))]
#[test]
fn a_jwt_option_without_the_feature_says_how_to_build_with_it() {
    for args in [&["--dpop"][..], &["--auth-method", "private_key_jwt"]] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{out}");
        assert!(
            out.stderr
                .contains("built without the jwt feature: run with --features jwt"),
            "{out}"
        );
    }
}

#[test]
fn help_lists_the_client_authentication_options() {
    let out = std::process::Command::new(example())
        .arg("--help")
        .output()
        .expect("the example runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--auth-method",
        "private_key_jwt",
        "client_secret_jwt",
        "tls_client_auth",
        "--private-key",
        "--key-id",
        "--signing-alg",
        "--client-cert",
        "--client-key",
        "--ca-cert",
        "--dpop",
        "--dpop-alg",
        "--issuer",
    ] {
        assert!(help.contains(option), "{option} missing\n{help}");
    }
}
