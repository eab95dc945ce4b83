#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
mod cache;
pub mod classify;
mod credentials;
mod error;
pub mod fetch;
mod future;
mod layer;
#[cfg(feature = "test-util")]
pub mod mock;
mod scope;
mod service;
mod token;

pub use crate::{
    cache::{TokenState, TokenStatus},
    credentials::{AuthMethod, ClientCredentials, ClientSecret, SIMPLEDOCS_TOKEN_URL},
    error::{BoxError, Error, ErrorKind},
    future::ResponseFuture,
    layer::{Builder, OAuthLayer, TokenHandle},
    scope::ScopePolicy,
    service::OAuth,
    token::{AccessToken, FetchReason, Scope, Token, TokenRequest},
};
